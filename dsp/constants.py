"""The one place for fxmix's DSP constants.

Stem *classes* used by default live here too, but a profile file carries its own class list and that
list wins wherever a profile is loaded.
"""

#: fxmix's release, recorded in the files it writes (profiles, weights sidecars, params.json); pyproject.toml
#: reads it from here.
VERSION = "0.1.0"

#: Processing sample rate (Hz). Inputs at other rates are resampled to it and back (soxr).
SAMPLE_RATE = 44100

#: Default stem classes, in the order the networks expect them (reference order: vocals, bass, drums, other
#: for its 8-channel input; we keep one order everywhere, this one).
CLASSES = ("vocals", "drums", "bass", "other")
#: The normalization stages in the order they run (reverb augmentation is opt-in and runs first).
STAGES = ("eq", "compression", "panning", "loudness")
#: The factory profile of the reference's published MUSDB18 averages.
REFERENCE_PROFILE = "musdb18-reference"

#: A stem whose peak is below this level (dBFS) counts as silent: it is passed through and skipped
#: when averaging dataset features (reference: MIN_DB = -50).
SILENCE_PEAK_DB = -50.0
#: Among the stems of one song, a stem whose peak is more than this many dB under the loudest stem's also
#: counts as silent (bleed, a reverb tail, noise): normalizing it to its class target would raise it by tens
#: of dB into a part the song does not have.
RELATIVE_SILENCE_DB = 40.0
#: A stem with less than this much audio (seconds, all counted) above SILENCE_PEAK_DB or within
#: RELATIVE_SILENCE_DB of its own peak, whichever is lower, is too short to measure: BS.1770 loudness gates
#: 400-ms blocks, so a click or a one-sample file would be raised by tens of dB to its class's loudness.
#: Such a stem is passed through.
MIN_ACTIVE_S = 0.4

#: Loudness reference for spectrum features: stems are measured as if normalized to this level (LUFS).
SPECTRUM_REF_LUFS = -30.0

#: Analysis STFT for long-term spectrum and panning features. 16384/8192 at 44.1 kHz gives 2.7 Hz bins,
#: enough to resolve the 1/6-octave bands down to 31 Hz (a long-term average needs no time resolution).
ANALYSIS_FFT = 16384
ANALYSIS_HOP = 8192

#: Log-frequency band grid (centre frequencies) for spectrum/panning features: 1/6 octave from 31.25 Hz
#: to 16 kHz (55 bands). Per-band power is averaged, then converted to dB.
BAND_FMIN_HZ = 31.25
BAND_FMAX_HZ = 16000.0
BANDS_PER_OCTAVE = 6

#: Onset-peak dynamics feature: stems are peak-normalized to this level before measuring (reference: -10 dBFS).
DYNAMICS_PEAK_NORM_DB = -10.0
#: Keep onset peaks above this percentile (reference: 75).
DYNAMICS_PERCENTILE = 75.0

#: Loudness stage: true-peak ceiling (dBTP).
TRUE_PEAK_CEILING_DB = -1.0

#: EQ stage: max boost/cut (dB) and FIR length (taps, odd; linear phase).
EQ_MAX_GAIN_DB = 24.0
EQ_FIR_TAPS = 8193

#: Compression stage: per-class attack/release (ms) and start ratio (reference values), max ratio,
#: threshold search range (dB re the peak-normalized level).
COMPRESSOR_SETTINGS = {
    "vocals": {"attack_ms": 7.5, "release_ms": 400.0, "ratio": 4.0},
    "drums": {"attack_ms": 10.0, "release_ms": 180.0, "ratio": 6.0},
    "bass": {"attack_ms": 10.0, "release_ms": 500.0, "ratio": 5.0},
    "other": {"attack_ms": 15.0, "release_ms": 666.0, "ratio": 4.0},
}
COMPRESSOR_DEFAULT = {"attack_ms": 10.0, "release_ms": 300.0, "ratio": 4.0}
COMPRESSOR_MAX_RATIO = 20.0
COMPRESSOR_MIN_THRESHOLD_DB = -40.0

#: Panning stage: bins above this frequency are left alone (reference: 16 kHz, drums 6 kHz).
PAN_CUTOFF_HZ = {"drums": 6000.0}
PAN_CUTOFF_DEFAULT_HZ = 16000.0
PAN_FFT = 2048
PAN_HOP = 512

#: Reverb augmentation send band limits (Hz): low shelf ~U[500,700], high shelf ~U[7000,10000], -30 dB.
REVERB_CLASSES = ("vocals", "other")

#: Onset detection for the dynamics feature: spectral flux on FFT/hop frames of the mono sum.
ONSET_FFT = 1024
ONSET_HOP = 256
ONSET_MIN_GAP_S = 0.05

#: the console mixer's reverb (fxmix.model.console): the corpus engineer's shared reverb return at its mean
#: taste and tempo (room, damping, width of pedalboard's Reverb; the send's high- and low-pass in Hz). A send of
#: S dB on the console is a send of S dB on the engineer's console.
REVERB_RETURN = {"room_size": 0.5, "damping": 0.5, "width": 0.7, "send_hpf_hz": 400.0, "send_lpf_hz": 9000.0}
