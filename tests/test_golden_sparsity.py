"""N:M sparsity: parsing, pruning ties, canonical packing and unpacking."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from golden.sparsity import pack_nm, parse_sparsity, prune_nm, slot_rows_k, unpack_nm

PATTERNS = [(1, 4), (2, 4), (2, 8), (4, 8)]


def test_parse_sparsity():
    assert parse_sparsity("dense") == (1, 1)
    assert [parse_sparsity(s) for s in ("1:4", "2:4", "2:8", "4:8")] == PATTERNS
    for bad in ("3:4", "2:16", "1:1", "", "2-4", None, "DENSE"):
        with pytest.raises(ValueError, match="sparsity"):
            parse_sparsity(bad)


def test_prune_keeps_largest_magnitudes_and_lower_index_on_ties():
    w = np.array([[0.5, 1.0], [-2.0, 1.0], [0.1, 1.0], [2.0, 1.0]])
    keep = prune_nm(w, 2, 4)
    # column 0: |−2| and |2| tie, both kept; column 1: all equal → the two lowest indices
    assert keep[:, 0].tolist() == [False, True, False, True]
    assert keep[:, 1].tolist() == [True, True, False, False]
    keep1 = prune_nm(w, 1, 4)
    assert keep1[:, 0].tolist() == [False, True, False, False]  # tie −2 / 2 → lower index


def test_prune_uses_saliency_when_given():
    w = np.array([[1.0], [2.0], [3.0], [4.0]])
    saliency = np.array([[9.0], [0.0], [0.0], [1.0]])
    assert prune_nm(w, 2, 4, saliency)[:, 0].tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="saliency shape"):
        prune_nm(w, 2, 4, saliency[:2])


def test_prune_dense_and_bad_k():
    assert prune_nm(np.ones((3, 2)), 1, 1).all()
    with pytest.raises(ValueError, match="multiple"):
        prune_nm(np.ones((6, 2)), 2, 4)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(PATTERNS),
    st.integers(1, 3),
    st.integers(1, 3),
    st.data(),
)
def test_prune_invariants(pattern, blocks, n_cols, data):
    n_sp, m_sp = pattern
    # few distinct values so that ties are frequent
    w = data.draw(hnp.arrays(np.float64, (blocks * m_sp, n_cols),
                             elements=st.sampled_from([0.0, 1.0, -1.0, 2.0, -0.5])))
    keep = prune_nm(w, n_sp, m_sp)
    kb = keep.reshape(blocks, m_sp, n_cols)
    assert (kb.sum(axis=1) == n_sp).all()
    score = np.abs(w).reshape(blocks, m_sp, n_cols)
    for b in range(blocks):
        for n in range(n_cols):
            kept, dropped = score[b, kb[b, :, n], n], score[b, ~kb[b, :, n], n]
            if dropped.size:
                assert kept.min() >= dropped.max()
                # ties: a dropped position never precedes a kept one of the same score
                for i in np.flatnonzero(~kb[b, :, n]):
                    later_kept = [j for j in np.flatnonzero(kb[b, :, n]) if j > i]
                    assert all(score[b, j, n] > score[b, i, n] for j in later_kept)


def test_pack_canonical_padding_by_hand():
    # one column per case, 2:4, one block each (K = 4)
    codes = np.array([[10, 11, 12, 13]] * 4, dtype=np.uint8).T.copy()
    keep = np.array([
        [False, False, True, False],   # one kept at idx 2 → pad at 0 → idx [0, 2]
        [True, False, False, False],   # kept at 0 → pad at 1 → [0, 1]
        [False, False, False, False],  # nothing → pads at [0, 1]
        [False, True, False, True],    # two kept → [1, 3]
    ]).T
    slots, idx = pack_nm(codes, keep, 2, 4, pad_codes=0)
    assert idx.T.tolist() == [[0, 2], [0, 1], [0, 1], [1, 3]]
    assert slots.T.tolist() == [[0, 12], [10, 0], [0, 0], [11, 13]]


def test_pack_pads_with_per_group_codes():
    K, N = 8, 1  # 2 groups of 4 = 2 blocks of 4 for 1:4
    codes = np.arange(8, dtype=np.uint8)[:, None]
    keep = np.zeros((K, N), dtype=bool)
    keep[6, 0] = True
    zeros = np.array([[7], [9]], dtype=np.uint8)
    slots, idx = pack_nm(codes, keep, 1, 4, pad_codes=zeros)
    assert slots[:, 0].tolist() == [7, 6] and idx[:, 0].tolist() == [0, 2]


def test_pack_refuses_too_many_kept():
    with pytest.raises(ValueError, match="more than 2"):
        pack_nm(np.zeros((4, 1), np.uint8), np.ones((4, 1), bool), 2, 4)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PATTERNS), st.integers(1, 4), st.integers(1, 3), st.data())
def test_pack_unpack_round_trip(pattern, blocks, n_cols, data):
    n_sp, m_sp = pattern
    K = blocks * m_sp
    codes = data.draw(hnp.arrays(np.uint8, (K, n_cols), elements=st.integers(1, 255)))
    scores = data.draw(hnp.arrays(np.float64, (K, n_cols), elements=st.floats(0, 1)))
    keep = prune_nm(scores, n_sp, m_sp)
    drop = data.draw(hnp.arrays(bool, (K, n_cols)))
    keep &= ~drop  # blocks with fewer than n_sp kept weights get padded
    slots, idx = pack_nm(codes, keep, n_sp, m_sp, pad_codes=0)
    assert slots.shape == idx.shape == (K * n_sp // m_sp, n_cols)
    ib = idx.reshape(blocks, n_sp, n_cols).astype(int)
    assert (np.diff(ib, axis=1) > 0).all() and (ib < m_sp).all()
    dense, stored = unpack_nm(slots, idx, n_sp, m_sp, K)
    assert (stored.reshape(blocks, m_sp, n_cols).sum(axis=1) == n_sp).all()
    assert (keep <= stored).all()
    np.testing.assert_array_equal(dense, np.where(keep, codes, 0))
    k = slot_rows_k(idx, n_sp, m_sp)
    assert (k // m_sp == np.arange(K * n_sp // m_sp)[:, None] // n_sp).all()


def test_unpack_rejects_broken_idx():
    codes = np.zeros((2, 1), np.uint8)
    with pytest.raises(ValueError, match="strictly increasing"):
        unpack_nm(codes, np.array([[2], [2]], np.uint8), 2, 4, 4)
    with pytest.raises(ValueError, match="below"):
        unpack_nm(codes, np.array([[0], [4]], np.uint8), 2, 4, 4)
