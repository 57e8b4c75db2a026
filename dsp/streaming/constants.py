"""Constants of the streaming normalizer: time constants, hop and update schedule, rate limits, filter sizes.

One place for them: the running meters, the planner, the normalizer and the engine read them from here
(re-exported by :mod:`fxmix.dsp.streaming`).
"""

from __future__ import annotations

from .. import constants as C

#: Time constant (s) of the long-term loudness, spectrum and φ (exponential forgetting).
TAU_S = 5.0
#: Window (s) of the running onset-peak dynamics (offline measure on the last window_s of audio).
DYNAMICS_WINDOW_S = 10.0
#: Window (s) of EQ'd audio the compressor plan (offline bisection) runs on.
COMP_WINDOW_S = 6.0
#: Fade-in (s) of that window (see :meth:`Planner.plan_compression`).
COMP_FADE_S = 0.05
#: Default internal hop (samples) of the normalizer = its latency.
HOP_SAMPLES = 512
#: Parameters move every UPDATE_HOPS hops; a plan is made every PLAN_HOPS hops, the compressor's every
#: COMP_PLAN_EVERY plans (it re-runs a compressor on COMP_WINDOW_S of audio).
UPDATE_HOPS = 4
PLAN_HOPS = 16
COMP_PLAN_EVERY = 4
#: Weight of a new measurement of the later stages' colouring in the closed-loop EQ target (1 = no smoothing).
COLOR_SMOOTHING = 0.5
#: Largest parameter step per update (dB): EQ/pan bands, output gain, compressor input gain. With 512-sample
#: hops at 44.1 kHz an update comes every 46 ms, so parameters slew at most ~10.8 dB/s, ramped within a hop.
MAX_STEP_DB = 0.5
#: Largest compressor threshold step per update (dB): the gain curve moves by at most this x (1 - 1/ratio).
COMP_STEP_DB = 0.5
#: Threshold (dBFS) of the output ceiling (sample peak; the offline chain holds true peaks under the ceiling).
LIMITER_THRESHOLD_DB = C.TRUE_PEAK_CEILING_DB - 1.0
#: EQ / pan curves are redesigned only when a band would move by at least this much (dB): a settled stem
#: costs no filter designs (each is ~1 ms of planner time).
FILTER_DEADBAND_DB = 0.05
#: Taps of the minimum-phase EQ / pan filters (a multiple of the hop).
FILTER_TAPS = 8192

