"""Analysis-by-synthesis encoding (musiclm.codec.search): never worse than the encoder, same format."""

from __future__ import annotations

import importlib
import io

import numpy as np
import pytest
import soundfile as sf
import torch
from test_compress import cli, music_like, tiny_codec

from musiclm.codec import bitstream
from musiclm.codec.search import ReconstructionError, SearchSettings, reconstruction_error, search_codes, search_latent
from musiclm.compress import compress_bytes, decompress_bytes, read_codes
from musiclm.errors import MusicLMError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def codec():
    return tiny_codec(seed=3)


@pytest.fixture(scope="module")
def wav() -> torch.Tensor:
    return torch.from_numpy(music_like(0.5, 24000, 1).T.astype(np.float32))[None]  # [1, 1, N]


def error_of(codec, codes, wav) -> float:
    return reconstruction_error(codec.decode(codes, wav.shape[-1]), wav).item()


def test_no_steps_is_the_encoder_and_steps_lower_the_error(codec, wav):
    encoded = codec.encode(wav, n_q=4)
    assert torch.equal(search_codes(codec, wav, 4, SearchSettings(0)), encoded)
    searched = search_codes(codec, wav, 4, SearchSettings(20))
    assert searched.shape == encoded.shape and searched.dtype == encoded.dtype
    assert 0 <= searched.min() and searched.max() < codec.card
    assert not torch.equal(searched, encoded)
    assert error_of(codec, searched, wav) < error_of(codec, encoded, wav)


def test_the_searched_latent_quantizes_to_the_searched_codes_and_lowered_the_error(codec, wav):
    """search_latent's latent is a target an encoder can learn: it quantizes to the codes returned."""
    result = search_latent(codec, wav, 4, SearchSettings(20))
    assert torch.equal(codec.quantizer.encode(result.latent, 4), result.codes)
    assert torch.equal(search_codes(codec, wav, 4, SearchSettings(20)), result.codes)
    assert result.error_best < result.error_start
    assert result.error_best == pytest.approx(error_of(codec, result.codes, wav), rel=1e-4)
    with pytest.raises(MusicLMError, match="steps"):
        search_latent(codec, wav, 4, SearchSettings(0))


def test_search_leaves_the_decoder_weights_and_their_gradients_alone(codec, wav):
    before = {k: v.clone() for k, v in codec.state_dict().items()}
    search_codes(codec, wav, 4, SearchSettings(3))
    assert all(torch.equal(before[k], v) for k, v in codec.state_dict().items())
    assert all(p.grad is None for p in codec.parameters())
    with torch.no_grad():  # the compressor calls it under no_grad: the search must still get gradients
        searched = search_codes(codec, wav, 4, SearchSettings(5))
    assert error_of(codec, searched, wav) < error_of(codec, codec.encode(wav, n_q=4), wav)


def test_a_searched_file_has_the_same_format_and_decodes_closer(codec, wav):
    plain = compress_bytes(wav[0], codec, sample_rate=24000, bandwidth=1.8, chunk_seconds=0.2)
    searched = compress_bytes(
        wav[0], codec, sample_rate=24000, bandwidth=1.8, chunk_seconds=0.2, search=SearchSettings(10)
    )
    header_plain, header_searched = (bitstream.read_header(io.BytesIO(b)) for b in (plain, searched))
    assert header_plain == header_searched  # the format does not say how the codes were chosen
    assert not np.array_equal(read_codes(plain, codec)[1], read_codes(searched, codec)[1])
    out_plain, out_searched = decompress_bytes(plain, codec)[0], decompress_bytes(searched, codec)[0]
    assert out_plain.shape == out_searched.shape == wav[0].shape
    errors = [reconstruction_error(out[None], wav).item() for out in (out_plain, out_searched)]
    assert errors[1] < errors[0]


def test_cli_search_flag(capsys, tmp_path):
    codec_dir = tiny_codec(seed=3).save_pretrained(tmp_path / "codec")
    sf.write(tmp_path / "in.wav", music_like(0.5, 24000, 1), 24000)
    rc, err = cli(capsys, "compress", tmp_path / "in.wav", tmp_path / "s.mlc", "--codec", codec_dir, "--search", "3")
    assert rc == 0, err
    assert bitstream.read_header(io.BytesIO((tmp_path / "s.mlc").read_bytes())).n_q > 0
    for bad in ("-1", "x", "1001"):
        with pytest.raises(SystemExit) as exit_info:
            cli(capsys, "compress", tmp_path / "in.wav", tmp_path / "t.mlc", "--search", bad)
        assert exit_info.value.code == 2
        assert "--search: expected a whole number of steps" in capsys.readouterr().err
    assert not (tmp_path / "t.mlc").exists()


def test_search_calls_on_step_before_every_step_and_stops_when_it_raises(codec, wav):
    calls = []
    search_codes(codec, wav, 4, SearchSettings(4), on_step=lambda: calls.append(1))
    assert len(calls) == 4

    class Stop(Exception):
        pass

    def stop_at_second():
        calls.append(1)
        if len(calls) == 6:
            raise Stop

    with pytest.raises(Stop):
        search_codes(codec, wav, 4, SearchSettings(10), on_step=stop_at_second)
    assert len(calls) == 6


def test_a_searched_compress_moves_its_progress_bar_at_every_step(codec, wav, monkeypatch):
    """A searched 10 s chunk takes over a minute on one thread: the bar advances per step, not per chunk, and
    still ends at the file's length."""
    encode_module = importlib.import_module("musiclm.compress.encode")

    updates = []

    class Bar:
        def __init__(self, header, progress, what):
            self.total = sum(header.chunk_length(i) / header.frame_rate for i in range(header.num_chunks))
            self.chunks = header.num_chunks

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, seconds):
            updates.append(seconds)

    bars = []
    monkeypatch.setattr(encode_module, "progress_bar", lambda *a: bars.append(Bar(*a)) or bars[-1])
    compress_bytes(wav[0], codec, sample_rate=24000, bandwidth=1.8, chunk_seconds=0.2, search=SearchSettings(4))
    assert bars[0].chunks > 1 and len(updates) == 4 * bars[0].chunks
    assert sum(updates) == pytest.approx(bars[0].total)
    updates.clear()
    compress_bytes(wav[0], codec, sample_rate=24000, bandwidth=1.8, chunk_seconds=0.2)
    assert len(updates) == bars[1].chunks and sum(updates) == pytest.approx(bars[1].total)


def test_a_cosine_schedule_searches_too_and_bad_settings_are_refused(codec, wav):
    result = search_latent(codec, wav, 4, SearchSettings(10, 0.03, schedule="cosine"))
    assert result.error_best < result.error_start
    assert torch.equal(codec.quantizer.encode(result.latent, 4), result.codes)
    for bad, field in (
        (dict(schedule="linear"), "schedule"),
        (dict(steps=-1), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(lr=0.0), "learning rate"),
        (dict(lr=float("nan")), "learning rate"),
        (dict(cqt_weight=-1.0), "constant-Q"),
    ):
        with pytest.raises(MusicLMError, match=field):
            SearchSettings(**bad)


def test_settings_name_their_rows_as_before():
    """Evaluation rows are found again by label, so a setting's label must not change under it."""
    assert SearchSettings().label == ""
    assert SearchSettings(100).label == "search100lr0.01"
    assert SearchSettings(15, 0.15).label == "search15lr0.15"
    assert SearchSettings(100, cqt_weight=8.0).label == "search100lr0.01cqt8"
    assert SearchSettings(40, 0.03, schedule="cosine").label == "search40lr0.03cosine"


def test_compress_takes_the_settings_whole(codec, wav):
    """The rate and the constant-Q term reach the search through compress_bytes, not only the steps."""
    files = {
        setting: compress_bytes(wav[0], codec, sample_rate=24000, bandwidth=1.8, chunk_seconds=0.2, search=setting)
        for setting in (SearchSettings(6), SearchSettings(6, lr=0.08), SearchSettings(6, cqt_weight=8.0))
    }
    codes = [read_codes(data, codec)[1] for data in files.values()]
    assert not np.array_equal(codes[0], codes[1]) and not np.array_equal(codes[0], codes[2])
    again = compress_bytes(wav[0], codec, sample_rate=24000, bandwidth=1.8, chunk_seconds=0.2, search=SearchSettings(6))
    assert again == files[SearchSettings(6)]


def test_the_objective_with_a_constant_q_term_is_what_the_search_descends(codec, wav):
    """The objective with its target's spectra computed once equals the function; the constant-Q term adds
    to it, is zero at the target, and a search reports its start and best by the objective it was given."""
    out = codec.decode(codec.encode(wav, n_q=4), wav.shape[-1])
    plain, with_cqt = ReconstructionError(wav), ReconstructionError(wav, cqt_weight=8.0)
    assert plain(out).item() == pytest.approx(reconstruction_error(out, wav, cqt_weight=0.0).item(), rel=1e-6)
    assert with_cqt(out).item() == pytest.approx(reconstruction_error(out, wav, cqt_weight=8.0).item(), rel=1e-6)
    assert with_cqt(out).item() > plain(out).item() + 0.1
    assert with_cqt(wav).item() == pytest.approx(plain(wav).item(), abs=1e-6)
    for weight in (0.0, 8.0):
        result = search_latent(codec, wav, 4, SearchSettings(6, 0.03, cqt_weight=weight))
        objective = ReconstructionError(wav, cqt_weight=weight)
        assert result.error_start == pytest.approx(objective(out).item(), rel=1e-4)
        searched = codec.decode(result.codes, wav.shape[-1])
        assert objective(searched).item() == pytest.approx(result.error_best, rel=1e-4)
        assert result.error_best < result.error_start


def test_a_batch_is_searched_item_by_item(codec, wav):
    """Each item of a batch (a chunk's channels, crops searched together) descends its own objective and keeps
    its own best codes: what its neighbour is changes nothing about its result. (Best by the batch's mean, as
    before, gave item 0 different codes beside different neighbours.)"""
    a = wav[0]
    quiet = 0.2 * torch.roll(a, 3000, -1)
    other = torch.from_numpy(music_like(0.5, 24000, 1, seed=5).T.astype(np.float32))
    beside_quiet = search_latent(codec, torch.stack([a, quiet]), 4, SearchSettings(12))
    beside_other = search_latent(codec, torch.stack([a, other]), 4, SearchSettings(12))
    assert torch.equal(beside_quiet.codes[0], beside_other.codes[0])
    assert torch.equal(beside_quiet.latent[0], beside_other.latent[0])
    assert not torch.equal(beside_quiet.codes[1], beside_other.codes[1])
    for batch, result in ((torch.stack([a, quiet]), beside_quiet), (torch.stack([a, other]), beside_other)):
        objective = ReconstructionError(batch)
        start = objective.per_item(codec.decode(codec.encode(batch, n_q=4), batch.shape[-1]))
        best = objective.per_item(codec.decode(result.codes, batch.shape[-1]))
        assert (best < start).all()  # every item gained, not only the batch on average
        assert best.tolist() == pytest.approx(result.item_errors_best, rel=1e-4)
        assert start.tolist() == pytest.approx(result.item_errors_start, rel=1e-4)
        assert objective(codec.decode(result.codes, batch.shape[-1])).item() == pytest.approx(
            result.error_best, rel=1e-4
        )
    # per item, the objective of a batch is each item's alone
    alone = [ReconstructionError(x[None])(x[None] * 0.5).item() for x in (a, other)]
    together = ReconstructionError(torch.stack([a, other])).per_item(torch.stack([a, other]) * 0.5)
    assert together.tolist() == pytest.approx(alone, rel=1e-5)
