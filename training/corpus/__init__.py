"""Session corpus v2: dry multitrack sessions of real instrument sounds and human-composed music, mixed by the
engineer, written in the MUSDB layout plus per-track audio and ``song.json``.

Modules: :mod:`.session` (the DryTrack / DrySession contract with the engineer), :mod:`.notes` (parts of
notes), :mod:`.fluid` (libfluidsynth renderer), :mod:`.openmpt` (libopenmpt per-instrument renderer),
:mod:`.midi` (MIDI files and the composer's CC7/CC10), :mod:`.material` (MMA grooves, chorales, procedural
scores, singing registers), :mod:`.performance` (performed dynamics), :mod:`.festival` (sung lead), :mod:`.human` (the human family and its reviewed instrument table),
:mod:`.families` (dry sessions per family), :mod:`.build` (planning, shards, writing; ``fxmix data build``).

Debian packages (``apt-get install -y --no-install-recommends``): libfluidsynth3 fluid-soundfont-gm
musescore-general-soundfont-small avldrums.lv2-soundfont mma festival festvox-kallpc16k libopenmpt0
tecnoballz-data freedroid-data bomberclone-data ri-li-data ballz-data openttd-openmsx planetblupi-music-midi;
PyPI: mido, music21 (chorales; optional).
"""
