"""``fxmix data build``: the session corpus (dry sessions -> engineer -> MUSDB layout + tracks + song.json).

Layout::

    DIR/corpus.json                                   # whole build (or DIR/shards/K-of-N.json per shard)
    DIR/<split>/<song>/{vocals,drums,bass,other}.flac  # class stems = sums of the wet tracks of each class
    DIR/<split>/<song>/mixture.flac                    # the engineer's master of the stem sum
    DIR/<split>/<song>/tracks/<track>.dry.flac, <track>.wet.flac
    DIR/<split>/<song>/song.json                       # tracks, classes, instruments, decisions, sources, licences

Planning is cheap and global: song ``i`` of a build gets its family, split and material from the build's seed
and song count alone, so a shard ``K/N`` builds exactly songs ``i`` with ``i % N == K - 1`` and the shards
together write the same files as one build. Audio is FLAC PCM_24 (no timestamps: same bytes every build).
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from fxmix.dsp.audio import write_audio, write_text_atomic
from fxmix.dsp.constants import CLASSES, SAMPLE_RATE
from fxmix.dsp.errors import ConfigError, FxmixError
from fxmix.dsp.profile_fit import parse_shard

from . import human, material
from .families import FAMILIES, FLUID_R3, MUSESCORE, SongPlan, build_session
from .session import SPLITS, DrySession

CORPUS_VERSION = 2
#: Share of each family in a build, and of each split within the generated families.
DEFAULT_SHARES = {"procedural": 0.15, "gm": 0.45, "human": 0.40}
SPLIT_SHARES = (0.8, 0.1, 0.1)
GM_MATERIALS = ("mma", "mma", "chorale", "score")


def _quota(n: int, shares: list[float]) -> list[int]:
    """Largest-remainder counts of n over shares."""
    total = sum(shares)
    exact = [n * s / total for s in shares]
    counts = [int(math.floor(e)) for e in exact]
    for i in sorted(range(len(shares)), key=lambda k: exact[k] - counts[k], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    return counts


def plan_corpus(n_songs: int, seconds: float, seed: int, families: tuple[str, ...] = FAMILIES) -> list[SongPlan]:
    """Every song of a build: family, split, material and name (no audio)."""
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise ConfigError(f"--families {','.join(families)}: choose from {', '.join(FAMILIES)}")
    if n_songs < 1 or not 2.0 <= seconds <= 600.0:
        raise ConfigError(f"--songs {n_songs} --seconds {seconds}: need >= 1 song of 2 to 600 s")
    per_family = dict(zip(families, _quota(n_songs, [DEFAULT_SHARES[f] for f in families])))
    slots: list[tuple[str, str, int]] = []  # (family, split, k-th song of that family and split)
    for fam in families:
        counts = dict(zip(SPLITS, _quota(per_family[fam], list(SPLIT_SHARES))))
        if per_family[fam] >= 2 and counts["test"] == 0:  # a small build still tests every family
            counts["train"] -= 1
            counts["test"] += 1
        slots += [(fam, s, k) for s in SPLITS for k in range(counts[s])]
    order = np.random.default_rng([seed, 0]).permutation(len(slots))  # interleave families across indices
    catalogue = human.excerpts(seconds) if "human" in families else {}
    grooves = {s: [g for g in material.mma_grooves() if material.groove_split(g) == s] for s in SPLITS} \
        if "gm" in families else {}
    plans = []
    for index, slot in enumerate(order):
        fam, split, k = slots[int(slot)]
        rng = np.random.default_rng([seed, index, 0])
        plans.append(_plan_one(index, fam, split, k, seed, seconds, rng, catalogue, grooves))
    return plans


def _plan_one(index, fam, split, k, seed, seconds, rng, catalogue, grooves) -> SongPlan:
    name = f"v2s{seed}-{index:05d}-{fam}"
    if fam == "human":
        items = catalogue[split]
        if not items:
            raise ConfigError(f"no human excerpts of {seconds:g} s for split {split}; use shorter --seconds")
        perm = np.random.default_rng([seed, 1, SPLITS.index(split)]).permutation(len(items))
        ex = items[int(perm[k % len(items)])]
        return SongPlan(index, f"{name}-{ex.name}", fam, split, seed, seconds, ex.kind, ex)
    if fam == "gm":
        kind = str(GM_MATERIALS[int(rng.integers(len(GM_MATERIALS)))])
        if kind == "mma":
            pool = grooves[split] or grooves["train"]
            what = f"mma:{pool[int(rng.integers(len(pool)))]}"
        elif kind == "chorale" and _chorales_available():
            pool = [c for c in material.chorale_names() if material.chorale_split(c) == split]
            what = f"chorale:{pool[int(rng.integers(len(pool)))]}"
        else:
            what = "score"
        font = MUSESCORE if split == "test" else FLUID_R3
        return SongPlan(index, name, fam, split, seed, seconds, what, None, font)
    return SongPlan(index, name, fam, split, seed, seconds)


def _chorales_available() -> bool:
    try:
        material.chorale_names()
    except ConfigError:
        return False
    return True


def render_song(plan: SongPlan, mix=None):
    """The dry session and its mix. ``mix(session, rng)`` defaults to the engineer's ``mix_session``."""
    if mix is None:
        from ..engineer import mix_session as mix  # lazy: workers import the engineer once, in the child
    session = build_session(plan)
    mixed = mix(session, np.random.default_rng([plan.seed, plan.index, 2]))
    return session, mixed


def song_json(plan: SongPlan, session: DrySession, mixed) -> dict:
    return {
        "corpus_version": CORPUS_VERSION,
        "name": plan.name,
        "family": plan.family,
        "split": plan.split,
        "seed": plan.seed,
        "index": plan.index,
        "seed_note": "dry rng = default_rng([seed, index, 1]); engineer rng = default_rng([seed, index, 2]); "
        "low voicing rng = default_rng([seed, index, 4])",
        "seconds": plan.seconds,
        "sample_rate": SAMPLE_RATE,
        "tempo_bpm": None if session.tempo_bpm is None else round(float(session.tempo_bpm), 3),
        "material": plan.material,
        "soundfont": Path(plan.soundfont).name if plan.family == "gm" else None,
        "excerpt": None if plan.excerpt is None else {"package": plan.excerpt.package, "file": plan.excerpt.file,
                                                      "start_s": plan.excerpt.start_s, "kind": plan.excerpt.kind},
        "tracks": [
            {"name": t.name, "class": t.cls, "instrument": t.instrument, "role": t.role, "source": t.source,
             "licence": t.licence, "composer_level_db": t.level_db, "composer_pan": t.pan,
             "dry": f"tracks/{t.name}.dry.flac", "wet": f"tracks/{t.name}.wet.flac", "decisions": d}
            for t, d in zip(session.tracks, mixed.decisions)
        ],
        "master": mixed.master,
    }


def write_song(root: Path, plan: SongPlan, session: DrySession, mixed) -> Path:
    folder = root / plan.split / plan.name
    n = session.n_samples
    classes = [t.cls for t in session.tracks]
    for t, w in zip(session.tracks, mixed.wet):
        write_audio(folder / "tracks" / f"{t.name}.dry.flac", t.audio, SAMPLE_RATE, subtype="PCM_24")
        write_audio(folder / "tracks" / f"{t.name}.wet.flac", w, SAMPLE_RATE, subtype="PCM_24")
    for c in CLASSES:
        stem = np.sum([w for w, k in zip(mixed.wet, classes) if k == c], axis=0) if c in classes \
            else np.zeros((2, n), np.float32)
        write_audio(folder / f"{c}.flac", np.asarray(stem, np.float32), SAMPLE_RATE, subtype="PCM_24")
    write_audio(folder / "mixture.flac", mixed.mixture, SAMPLE_RATE, subtype="PCM_24")
    text = json.dumps(song_json(plan, session, mixed), indent=1, default=_json_default) + "\n"
    write_text_atomic(folder / "song.json", text)
    return folder


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _work(job: tuple[SongPlan, str]) -> dict:
    plan, root = job
    t0 = time.process_time()
    session, mixed = render_song(plan)
    write_song(Path(root), plan, session, mixed)
    return _row(plan, len(session.tracks), round(time.process_time() - t0, 2))


def _row(plan: SongPlan, tracks: int, cpu_s: float) -> dict:
    """A song's line of the build's results (the manifest keeps all but ``cpu_s``)."""
    return {"name": plan.name, "split": plan.split, "family": plan.family, "tracks": tracks, "cpu_s": cpu_s}


def written_song(root: Path, plan: SongPlan) -> dict | None:
    """The result row of a song an earlier build of the same plan wrote whole, else None. ``song.json`` is
    written last and atomically, so its presence with the plan's identity means the audio beside it is whole."""
    folder = root / plan.split / plan.name
    try:
        meta = json.loads((folder / "song.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = {"corpus_version": CORPUS_VERSION, "name": plan.name, "family": plan.family, "split": plan.split,
            "seed": plan.seed, "index": plan.index, "seconds": plan.seconds}
    if any(meta.get(k) != v for k, v in same.items()):
        return None
    files = [folder / t["wet"] for t in meta.get("tracks", [])] + [folder / "mixture.flac"]
    if not meta.get("tracks") or not all(f.is_file() for f in files):
        return None
    return _row(plan, len(meta["tracks"]), 0.0)


def _failed(plan: SongPlan, exc: BaseException, root: Path) -> Exception:
    """The error of a song that did not render: it names the song and how to go on without redoing the rest."""
    hint = (f"the songs finished so far are kept: after fixing the cause, rerun the same command with --resume "
            f"to render only the missing ones into {root}")
    kind = type(exc) if isinstance(exc, FxmixError) else RuntimeError  # the CLI prints FxmixError plainly
    return kind(f"song {plan.name} ({plan.family}, {plan.split}, index {plan.index}) failed: {exc}; {hint}")


def _render_all(plans: list[SongPlan], root: Path, jobs: int, bar) -> list[dict]:
    """Render ``plans``; stops at the first song that fails (pending songs are cancelled, running ones end)."""
    results: list[dict] = []
    if jobs <= 1:
        for p in plans:
            try:
                results.append(_work((p, str(root))))
            except Exception as exc:
                raise _failed(p, exc, root) from exc
            bar.update(1)
        return results
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_work, (p, str(root))): p for p in plans}
        for fut in as_completed(futures):
            try:
                results.append(fut.result())
            except Exception as exc:
                pool.shutdown(wait=True, cancel_futures=True)
                raise _failed(futures[fut], exc, root) from exc
            bar.update(1)
    return results


def build_corpus(out: str | os.PathLike, n_songs: int, seconds: float = 20.0, seed: int = 0, *, jobs: int = 1,
                 shard: str | None = None, families: tuple[str, ...] = FAMILIES, progress: bool = True,
                 command: str = "", resume: bool = False) -> dict:
    """Build (a shard of) the corpus; returns and writes the manifest (corpus.json or shards/K-of-N.json).

    The first song that fails stops the build (songs written whole stay). ``resume`` keeps the songs an earlier
    build of the same plan wrote whole (:func:`written_song`) and renders the rest; without it every song is
    rendered again and its files replaced."""
    from tqdm import tqdm

    root = Path(out)
    k, n_shards = parse_shard(shard)
    plans = [p for p in plan_corpus(n_songs, seconds, seed, families) if p.index % n_shards == k - 1]
    t0 = time.perf_counter()
    kept = [r for r in (written_song(root, p) for p in plans) if r is not None] if resume else []
    done = {r["name"] for r in kept}
    todo = [p for p in plans if p.name not in done]
    bar = tqdm(total=len(plans), initial=len(kept), desc=f"build {k}/{n_shards}", unit="song",
               disable=not progress)
    results = kept + _render_all(todo, root, jobs, bar)
    bar.close()
    results.sort(key=lambda r: r["name"])
    manifest = {"corpus_version": CORPUS_VERSION, "songs_total": n_songs, "seconds": seconds, "seed": seed,
                "families": list(families), "shard": f"{k}/{n_shards}", "command": command,
                "split_counts": {s: sum(r["split"] == s for r in results) for s in SPLITS},
                "family_counts": {f: sum(r["family"] == f for r in results) for f in families},
                "songs": [{key: r[key] for key in ("name", "split", "family", "tracks")} for r in results]}
    target = root / "corpus.json" if n_shards == 1 else root / "shards" / f"{k}-of-{n_shards}.json"
    write_text_atomic(target, json.dumps(manifest, indent=1) + "\n")
    manifest["wall_s"] = round(time.perf_counter() - t0, 2)
    manifest["cpu_s"] = round(sum(r["cpu_s"] for r in results), 2)
    manifest["kept"] = len(kept)
    return manifest
