"""The paper network's fast runtime: FFT convolution = direct convolution, fast = eager on a small random
paper config, and chunked mixing of a long input without any full-length array but the output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fxmix.dsp.errors import ConfigError
from fxmix.model.apply import mix_stems, plan_chunks, run_whole
from fxmix.model.config import PaperNetConfig
from fxmix.model.fftconv import FFTConv1d
from fxmix.model.nets import PaperNet
from fxmix.model.paper_runtime import PaperRuntime
from fxmix.model.registry import build_model
from fxmix.model.runtime import load_runtime
from fxmix.model.states import save_model

#: A small paper network with the paper's kernel sizes (64-tap encoder, 128-tap adaptive conv, pool 64).
SMALL = PaperNetConfig(
    n_filters=16,
    bottleneck=16,
    hidden=16,
    skip=8,
    n_blocks=3,
    n_repeats=1,
    lstm_hidden=8,
    lstm_layers=2,
    lstm_dropout=0.0,
    se_expansion=2,
    stem_faders=True,
)


def _net(seed: int = 0) -> PaperNet:
    torch.manual_seed(seed)
    net = PaperNet(SMALL).eval()
    with torch.no_grad():  # faders away from 0 dB, so the runtime must apply them
        net.faders.log10_gain.copy_(torch.tensor([0.1, -0.2, 0.05, 0.0]))
    return net


def _stems(n: int, seed: int = 0, batch: int | None = None) -> torch.Tensor:
    shape = (4, 2, n) if batch is None else (batch, 4, 2, n)
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(*shape, generator=g)


@pytest.mark.parametrize("n", [128, 1000, 5003])
@pytest.mark.parametrize("block", [None, 256])
def test_fft_depthwise_conv_equals_direct_conv(n, block):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(2, 16, n, generator=g).abs()
    w = torch.randn(16, 1, 128, generator=g) / 128**0.5
    y = FFTConv1d(w, groups=16, block=block)(x)
    ref = F.conv1d(x, w, groups=16)
    assert y.shape == ref.shape == (2, 16, n - 127)
    assert float((y - ref).abs().max()) <= 1e-5


@pytest.mark.parametrize("n", [64, 777, 5003])
def test_fft_dense_conv_equals_direct_conv(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(3, 8, n, generator=g)
    w = torch.randn(16, 8, 64, generator=g) / (8 * 64) ** 0.5
    y = FFTConv1d(w)(x)
    ref = F.conv1d(x, w)
    assert y.shape == ref.shape and float((y - ref).abs().max()) <= 1e-5
    with pytest.raises(ConfigError, match="needs 8 channels"):
        FFTConv1d(w)(x[:, :4])
    with pytest.raises(ConfigError, match="groups"):
        FFTConv1d(w, groups=8)


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_runtime_equals_eager_network(threads):
    net = _net()
    rt = PaperRuntime(net, threads=threads, segment=4096)  # several segments per input
    x = _stems(64 * 300, batch=2)
    with torch.inference_mode():
        ref = net(x)
    y = rt(x)
    assert y.shape == ref.shape and float((y - ref).abs().max()) <= 1e-4
    # a window decodes only what it is asked for, and equals the same slice of the whole output
    window = rt.mix_window(x, 1000, 7001)
    assert window.shape == (2, 2, 7001)
    assert float((window - ref[..., 1000:8001]).abs().max()) <= 1e-4


def test_fast_runtime_chunked_equals_eager_chunked():
    net = _net(1)
    rt = PaperRuntime(net, threads=2)
    x = _stems(44100 * 3 + 99, seed=3)
    kwargs = {"chunk_s": 1.2, "overlap_s": 0.05}
    assert plan_chunks(rt, x.shape[-1], chunk_s=1.2, overlap_s=0.05).n_chunks >= 3
    ref = mix_stems(net, x, **kwargs)
    y = mix_stems(rt, x, **kwargs)  # two chunks per call (the runtime's chunk_batch)
    assert rt.chunk_batch == 2 and y.shape == (2, x.shape[-1])
    assert float((y - ref).abs().max()) <= 1e-4


def test_batched_chunks_equal_one_at_a_time():
    """What a GPU run does (many chunks per call) gives what one chunk per call gives."""
    net = _net(4)
    x = _stems(44100 * 4, seed=4)
    one = mix_stems(net, x, chunk_s=1.0, overlap_s=0.05, batch_size=1)
    many = mix_stems(net, x, chunk_s=1.0, overlap_s=0.05, batch_size=16)
    assert plan_chunks(net, x.shape[-1], chunk_s=1.0, overlap_s=0.05).n_chunks > 4
    assert float((many - one).abs().max()) <= 1e-5


def test_input_up_to_one_chunk_is_one_pass():
    net = build_model("fxmix-tiny").eval()
    chunk = plan_chunks(net, 1, chunk_s=1.0).chunk
    assert plan_chunks(net, chunk, chunk_s=1.0).n_chunks == 1
    assert plan_chunks(net, chunk + 1, chunk_s=1.0).n_chunks == 2
    x = _stems(chunk - 5)
    assert torch.equal(mix_stems(net, x, chunk_s=1.0), run_whole(net, x))


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024


def test_long_input_is_mixed_without_full_length_intermediates():
    """120 s through the fast runtime: the peak grows by the output and chunk-sized work, not by the song."""
    rt = PaperRuntime(build_model("fxmix-tiny").eval(), threads=2)
    n = 120 * 44100
    x = np.random.default_rng(0).standard_normal((4, 2, n), dtype=np.float32)
    x *= 0.1
    input_mb, output_mb = x.nbytes / 2**20, 2 * n * 4 / 2**20
    mix_stems(rt, x[..., : 3 * 44100], chunk_s=2.0)  # warm-up: threads, allocator
    with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM) to the current RSS
        fh.write("5")
    before = _peak_rss_mb()
    y = mix_stems(rt, x, chunk_s=2.0)
    grown = _peak_rss_mb() - before
    assert y.shape == (2, n) and bool(torch.isfinite(y).all())
    # a full-length copy of the input alone would be input_mb; its 16-channel latent 2 x input_mb
    assert grown < output_mb + 0.5 * input_mb, f"peak grew {grown:.0f} MB for a {output_mb:.0f} MB output"


def test_bf16_option_is_close_or_refused():
    net = _net(2)
    x = _stems(64 * 200)
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        with torch.inference_mode():
            err = float((PaperRuntime(net, bf16=True)(x[None]) - net(x[None])).abs().max())
        assert 0.0 < err < 2e-2
    else:
        with pytest.raises(ConfigError, match="bfloat16"):
            PaperRuntime(net, bf16=True)


def test_rnn_kernel_choice_does_not_change_the_output():
    net = _net(3)
    x = _stems(64 * 100)[None]
    prev = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):  # oneDNN LSTM on one thread, ATen's native one on two
            torch.set_num_threads(threads)
            with torch.inference_mode():
                outs.append(net(x))
    finally:
        torch.set_num_threads(prev)
    assert float((outs[0] - outs[1]).abs().max()) <= 1e-5


def test_fast_backend_is_for_the_paper_network_only(tmp_path):
    torch.manual_seed(0)
    save_model(tmp_path / "wun", build_model("wave_unet").eval())
    assert load_runtime(tmp_path / "wun").backend == "eager"
    with pytest.raises(ConfigError, match="paper network only"):
        load_runtime(tmp_path / "wun", "fast")
