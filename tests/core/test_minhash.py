"""MinHash core: shingles, signatures vs exact Jaccard, LSH band choice vs datasketch, union-find determinism."""

from __future__ import annotations

import numpy as np

from app.core.minhash import (
    UnionFind,
    band_keys,
    edge_clusters,
    jaccard,
    minhash_signatures,
    minhash_signatures_flat,
    optimal_bands,
    pair_jaccards,
    permutations,
    shingle_hashes,
    shingle_hashes_batch,
    shingle_windows,
)


def test_char_shingles_hand_worked():
    # "Abc  de" normalizes to "abc de" (6 chars) -> 5-grams "abc d", "bc de" -> 2 distinct shingles
    assert shingle_hashes("Abc  de", 5).size == 2
    assert np.array_equal(shingle_hashes("ABC DE", 5), shingle_hashes("abc de", 5))
    assert shingle_hashes("abab" * 10, 2).size == 2  # "ab", "ba"
    assert shingle_hashes("abc", 5).size == 1  # shorter than k: one whole-text shingle
    assert shingle_hashes("", 5).size == 0
    assert shingle_hashes("one two three four", 2, unit="word").size == 3


def test_jaccard_hand_worked():
    a, b = np.array([1, 2, 3, 4], np.uint32), np.array([3, 4, 5], np.uint32)
    assert jaccard(a, b) == 2 / 5


def test_signature_agreement_estimates_jaccard():
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(20):
        base = rng.choice(1 << 31, 400, replace=False).astype(np.uint32)
        keep = rng.integers(200, 400)
        other = np.unique(np.concatenate([base[:keep], rng.choice(1 << 31, 400 - keep).astype(np.uint32)]))
        a = np.unique(base)
        sig = minhash_signatures([a, other], num_perm=256, seed=3)
        errors.append(abs((sig[0] == sig[1]).mean() - jaccard(a, other)))
    assert np.mean(errors) < 0.03  # std of the estimator at 256 perms is <= 0.031


def test_batched_signatures_equal_one_by_one():
    docs = [shingle_hashes(t) for t in ["the cat sat on the mat", "", "a dog ran in the park", "x" * 3]]
    together = minhash_signatures(docs, 64, seed=7, chunk=8)  # tiny chunk forces several groups
    alone = np.vstack([minhash_signatures([d], 64, seed=7) for d in docs])
    assert np.array_equal(together, alone)
    assert (together[1] == 0xFFFFFFFF).all()


def test_optimal_bands_match_datasketch():
    from datasketch import MinHashLSH

    for threshold, num_perm in [(0.8, 128), (0.5, 128), (0.9, 256)]:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        assert optimal_bands(threshold, num_perm) == (lsh.b, lsh.r)


def test_band_keys_collide_only_on_equal_bands():
    sig = np.arange(24, dtype=np.uint32).reshape(2, 12)
    sig[1, :4] = sig[0, :4]  # first band equal, the other two differ
    keys = band_keys(sig, bands=3, rows=4)
    assert keys.shape == (2, 3)
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] != keys[1, 1] and keys[0, 2] != keys[1, 2]


def test_union_find_smallest_id_is_root():
    uf = UnionFind()
    for a, b in [(5, 3), (3, 9), (7, 8)]:
        uf.union(a, b)
    assert uf.clusters() == {3: [3, 5, 9], 7: [7, 8]}


def test_edge_clusters_by_hand_and_equal_to_union_find_on_random_graphs():
    ids, roots = edge_clusters(np.array([(5, 3), (3, 9), (7, 8)]))
    assert ids.tolist() == [3, 5, 7, 8, 9] and roots.tolist() == [3, 3, 7, 7, 3]  # the example above, by hand
    rng = np.random.default_rng(0)
    for n_nodes, n_edges in [(50, 30), (400, 600), (3000, 2000)]:  # sparse to one giant component; long chains too
        nodes = rng.choice(1 << 40, n_nodes, replace=False)
        edges = nodes[rng.integers(0, n_nodes, (n_edges, 2))]
        edges = np.concatenate([edges, np.stack([nodes[:-1:7], nodes[1::7]], axis=1)])  # a chain across the ids
        uf = UnionFind()
        for a, b in edges.tolist():
            uf.union(a, b)
        ids, roots = edge_clusters(edges)
        got: dict = {}
        for i, r in zip(ids.tolist(), roots.tolist()):
            got.setdefault(r, []).append(i)
        assert {r: m for r, m in got.items() if len(m) > 1} == uf.clusters()
    assert edge_clusters(np.empty((0, 2), np.int64))[0].size == 0


def test_batch_shingles_equal_per_document():
    texts = ["The cat  sat on the mat", "", "abc", "abcd", "x", "Héllo wörld ✓✓ héllo", "a dog ran in the park"]
    for unit, k in (("char", 5), ("char", 3), ("word", 2)):
        hashes, offsets = shingle_hashes_batch(texts, k, unit)
        assert offsets.tolist()[0] == 0 and offsets[-1] == hashes.size
        for d, t in enumerate(texts):
            assert np.array_equal(hashes[offsets[d] : offsets[d + 1]], shingle_hashes(t, k, unit))
    sig = minhash_signatures_flat(*shingle_hashes_batch(texts), num_perm=32, seed=5, chunk=4)  # tiny chunk: many blocks
    assert np.array_equal(sig, minhash_signatures([shingle_hashes(t) for t in texts], 32, seed=5))
    assert (sig[1] == 0xFFFFFFFF).all()  # the empty document


def test_signatures_equal_plain_python_reference():
    # independent reference: signature[d][i] = min over x of ((a_i * x + b_i) mod 2^64) >> 32, Python ints
    rng = np.random.default_rng(1)
    docs = [np.unique(rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)) for n in (1, 7, 300, 50)]
    a, b = permutations(16, seed=9)
    expected = [[min(((int(ai) * int(x) + int(bi)) % (1 << 64)) >> 32 for x in d) for ai, bi in zip(a, b)]
                for d in docs]
    assert np.array_equal(minhash_signatures(docs, 16, seed=9, chunk=64), np.array(expected, dtype=np.uint32))
    assert (a % 2 == 1).all()


def test_signatures_are_unbiased_with_binomial_spread():
    # each of the 128 hash functions must behave like an independent random permutation: agreement ~ Binomial(128, J)
    rng = np.random.default_rng(2)
    est, true = [], []
    for _ in range(300):
        a = rng.choice(1 << 32, 400, replace=False).astype(np.uint32)
        shared = rng.integers(150, 400)
        b = np.unique(np.concatenate([a[:shared], rng.choice(1 << 32, 400 - shared).astype(np.uint32)]))
        sig = minhash_signatures([np.unique(a), b], num_perm=128)
        est.append((sig[0] == sig[1]).mean())
        true.append(np.intersect1d(a, b).size / np.union1d(a, b).size)
    est, true = np.array(est), np.array(true)
    z = (est - true) / np.sqrt(true * (1 - true) / 128)
    assert abs(np.mean(est - true)) < 0.01  # unbiased
    assert 0.8 < np.std(z) < 1.25  # spread of independent permutations (correlated hashes would widen it)


def test_shingle_windows_as_sets_equal_shingle_hashes():
    texts = ["The cat  sat on the mat the cat", "", "abc", "abcd", "abcde", "Héllo wörld ✓✓ héllo"]
    windows, offsets = shingle_windows(texts, 5)
    for d, t in enumerate(texts):
        assert np.array_equal(np.unique(windows[offsets[d] : offsets[d + 1]]), shingle_hashes(t, 5))
    expected = minhash_signatures([shingle_hashes(t) for t in texts], 32)
    assert np.array_equal(minhash_signatures_flat(windows, offsets, 32), expected)


def test_pair_jaccards_equal_one_by_one():
    texts = ["the cat sat on the mat", "the cat sat on a mat", "", "", "a dog ran in the park", "abc"]
    hashes, offsets = shingle_hashes_batch(texts)
    pairs = np.array([[0, 1], [1, 0], [2, 3], [0, 2], [4, 0], [5, 5], [0, 0]])
    sets = [hashes[offsets[d] : offsets[d + 1]] for d in range(len(texts))]
    expected = [jaccard(sets[a], sets[b]) for a, b in pairs]
    assert np.allclose(pair_jaccards(hashes, offsets, pairs), expected)
    assert pair_jaccards(hashes, offsets, np.empty((0, 2), np.int64)).size == 0


def test_shingle_rows_are_the_shingle_sets_in_contiguous_rows():
    from app.core.minhash import shingle_rows

    texts = ["Abc  de", "abab" * 10, "abc", "", "the cat sat on the mat", "x"]
    hashes, offsets = shingle_rows(texts, 5)
    assert hashes.dtype == np.uint64 and offsets.tolist() == [0, 6, 46, 49, 49, 71, 72]  # one slot per character
    for d, t in enumerate(texts):
        row = hashes[offsets[d] : offsets[d + 1]]
        assert np.unique(row).size == shingle_hashes(t, 5).size  # same set sizes: no junk window across documents
    assert np.array_equal(np.unique(hashes[0:6]), np.unique(shingle_rows(["abc de"], 5)[0]))  # normalized alike
    assert set(hashes[6:46].tolist()) != set(hashes[0:6].tolist())
