"""Factorized attention masks of the Jukebox prior: each pattern equals a matrix written out by hand
(12 positions, rows of 4), disallowed keys get exactly zero weight and zero gradient, the block
reshapes equal the masks, and the transformer built from them is causal and samples incrementally
with the same logits as its full forward pass."""

from __future__ import annotations

import pytest
import torch

from pipeline.models import sparse_attention as sa
from pipeline.names import ATTENTION_KINDS
from pipeline.models.jukebox import Conditioner, JukeboxPrior, PriorConfig, dilations, upsample_strides


def _matrix(text: str) -> torch.Tensor:
    rows = [r.replace(" ", "") for r in text.strip().splitlines()]
    return torch.tensor([[c == "1" for c in r] for r in rows])


# query i (row) may attend to key j (column); 12 positions, blocksize 4 (rows 0-3, 4-7, 8-11)
EXPECTED = {
    "dense": _matrix("""
        1000 0000 0000
        1100 0000 0000
        1110 0000 0000
        1111 0000 0000
        1111 1000 0000
        1111 1100 0000
        1111 1110 0000
        1111 1111 0000
        1111 1111 1000
        1111 1111 1100
        1111 1111 1110
        1111 1111 1111"""),
    "row": _matrix("""
        1000 0000 0000
        1100 0000 0000
        1110 0000 0000
        1111 0000 0000
        0000 1000 0000
        0000 1100 0000
        0000 1110 0000
        0000 1111 0000
        0000 0000 1000
        0000 0000 1100
        0000 0000 1110
        0000 0000 1111"""),
    "column": _matrix("""
        1000 0000 0000
        0100 0000 0000
        0010 0000 0000
        0001 0000 0000
        1000 1000 0000
        0100 0100 0000
        0010 0010 0000
        0001 0001 0000
        1000 1000 1000
        0100 0100 0100
        0010 0010 0010
        0001 0001 0001"""),
    "prev_row": _matrix("""
        0000 0000 0000
        0000 0000 0000
        0000 0000 0000
        0000 0000 0000
        1111 0000 0000
        1111 0000 0000
        1111 0000 0000
        1111 0000 0000
        0000 1111 0000
        0000 1111 0000
        0000 1111 0000
        0000 1111 0000"""),
}


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_mask_equals_hand_written_matrix(kind):
    mask = sa.make_mask(kind, 12, 4)
    assert mask.dtype == torch.bool and mask.shape == (12, 12)
    assert torch.equal(mask, EXPECTED[kind])
    for t in range(12):  # the incremental views agree with the matrix
        assert torch.equal(sa.mask_row(kind, t, 4), EXPECTED[kind][t, : t + 1])
        assert sa.key_index(kind, t, 4).tolist() == torch.nonzero(EXPECTED[kind][t]).flatten().tolist()


def test_one_cycle_of_row_column_prev_row_reaches_every_earlier_position():
    eye = torch.eye(12)
    row, col, prev = (sa.make_mask(k, 12, 4).float() + eye for k in ("row", "column", "prev_row"))  # + residual
    reach_two = (col @ row) > 0  # row then column: earlier rows only up to the query's own column
    assert not reach_two[5, 2] and reach_two[5, 1] and reach_two[5, 4]
    reach = (prev @ col @ row) > 0  # the previous-row layer fills the gap (jukebox attn_order 2)
    assert torch.equal(reach, sa.make_mask("dense", 12, 4))


def test_bad_kind_and_blocksize():
    with pytest.raises(ValueError, match="'diagonal'"):
        sa.make_mask("diagonal", 4, 2)
    with pytest.raises(ValueError, match="blocksize=0"):
        sa.make_mask("row", 4, 0)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_disallowed_keys_get_zero_weight_and_zero_gradient(kind):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 12, 8, generator=g, requires_grad=True) for _ in range(3))
    mask = sa.make_mask(kind, 12, 4)
    for i in range(12):
        for x in (q, k, v):
            x.grad = None
        out = sa.masked_attention(q, k, v, mask)
        out[:, :, i].sum().backward()
        allowed = mask[i]
        assert (k.grad[:, :, ~allowed] == 0).all() and (v.grad[:, :, ~allowed] == 0).all()
        if allowed.any():  # every allowed value receives its (positive) weight
            assert (v.grad[:, :, allowed].abs().sum(-1) > 0).all()
        else:  # prev_row, first row: no key at all -> zero output, as jukebox's zero padding
            assert torch.equal(out[:, :, i], torch.zeros_like(out[:, :, i]))
        # the output of query i moves with an allowed value and not with a disallowed one
        with torch.no_grad():
            for j in range(12):
                v2 = v.detach().clone()
                v2[:, :, j] += 1.0
                moved = not torch.allclose(sa.masked_attention(q, k, v2, mask)[:, :, i], out[:, :, i])
                assert moved == bool(allowed[j])


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@pytest.mark.parametrize("T", [12, 16, 10])
def test_block_reshape_equals_mask(kind, T):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, T, 5, generator=g) for _ in range(3))
    fast = sa.factorized_attention(q, k, v, kind, 4)
    slow = sa.masked_attention(q, k, v, sa.make_mask(kind, T, 4))
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


def _tiny(**over) -> PriorConfig:
    cfg = dict(bins=11, width=16, layers=4, heads=2, context=24, blocksize=4, pattern=("row", "column", "prev_row"))
    cfg.update(over)
    return PriorConfig(**cfg)


def test_layers_cycle_the_pattern():
    model = JukeboxPrior(_tiny(layers=5, pattern=("row", "column", "prev_row")))
    assert [b.attn.kind for b in model.blocks] == ["row", "column", "prev_row", "row", "column"]
    with pytest.raises(ValueError, match="'rows'"):
        _tiny(pattern=("rows",))


@pytest.mark.parametrize("pattern", [("dense",), ("row", "column", "prev_row"), ("prev_row", "row")])
def test_model_is_causal(pattern):
    torch.manual_seed(0)
    model = JukeboxPrior(_tiny(pattern=pattern)).eval()
    g = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 11, (2, 24), generator=g)
    logits = model(codes)
    for t in (0, 5, 13, 23):
        other = codes.clone()
        other[:, t:] = torch.randint(0, 11, (2, 24 - t), generator=g)
        other[:, t] = (codes[:, t] + 1) % 11  # surely different at t
        # position p predicts codes[p] from codes[< p]: logits up to t do not see codes t..
        torch.testing.assert_close(model(other)[:, : t + 1], logits[:, : t + 1])
        if t + 1 < 24:
            assert not torch.allclose(model(other)[:, t + 1:], logits[:, t + 1:])


@pytest.mark.parametrize("upsampler,pattern", [(False, ("row", "column", "prev_row")), (True, ("row", "column", "prev_row")),
                                               (False, ("dense",))])
def test_incremental_steps_equal_the_full_forward(upsampler, pattern):
    torch.manual_seed(0)
    cfg = _tiny(cond_ratio=4, cond_depth=2, pattern=pattern) if upsampler else _tiny(pattern=pattern)
    model = JukeboxPrior(cfg).eval()
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, 11, (2, 22), generator=g)  # not a multiple of the blocksize
    upper = torch.randint(0, 11, (2, 6), generator=g) if upsampler else None
    full = model(codes, upper)
    cond = model.condition(upper, 22)
    for prime in (0, 7, 12):
        cache = model.new_cache(2, 22)
        model.prime(cache, codes[:, :prime], cond)
        for t in range(prime, 22):
            step = model.step(cache, codes[:, t - 1] if t else None, cond)
            torch.testing.assert_close(step, full[:, t], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ratio,expected", [(1, []), (2, [2]), (4, [2, 2]), (8, [2, 2, 2]), (3, [3]), (6, [6])])
def test_conditioner_output_length_equals_the_lower_level(ratio, expected):
    assert upsample_strides(ratio) == expected
    cond = Conditioner(bins=7, width=8, out_width=12, ratio=ratio, depth=3, growth=3, cycle=0)
    for t_up in (1, 5, 16):
        out = cond(torch.randint(0, 7, (2, t_up)))
        assert out.shape == (2, t_up * ratio, 12)


def test_dilations_grow_and_cycle():
    assert dilations(4, 3, 0) == [1, 3, 9, 27]
    assert dilations(5, 2, 2) == [1, 2, 1, 2, 1]
