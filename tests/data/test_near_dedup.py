"""find_near_duplicates on real Ray: the clusters equal those of exact all-pairs Jaccard on a planted corpus."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest




def _corpus(n_base: int = 150, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = "the a cat dog sold bought clips apples friends april may june half twice many more than each".split()
    texts = [" ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(40)) for _ in range(n_base)]
    for i in rng.sample(range(n_base), 40):  # near copies: one or two words changed (Jaccard well above 0.8)
        w = texts[i].split()
        for j in rng.sample(range(len(w)), rng.choice([1, 2])):
            w[j] = "edited" + str(j)
        texts.append(" ".join(w).upper() if rng.random() < 0.3 else " ".join(w))
    rng.shuffle(texts)
    return texts


@pytest.mark.ray
def test_clusters_equal_exact_all_pairs(ray_local):
    import ray

    from app.core.minhash import UnionFind, jaccard, shingle_hashes
    from app.data.near_dedup import MinHashParams, find_near_duplicates

    texts = _corpus()
    sets = [shingle_hashes(t) for t in texts]
    uf = UnionFind()
    for a, b in itertools.combinations(range(len(texts)), 2):
        if jaccard(sets[a], sets[b]) >= 0.8:
            uf.union(a, b)
    expected = {root: [m for m in members if m != root] for root, members in uf.clusters().items()}
    assert sum(map(len, expected.values())) >= 30  # the planted copies are there

    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=5)
    result = find_near_duplicates(ds, MinHashParams(threshold=0.8), batch_size=64)  # several batches and blocks
    assert result.clusters == expected
    assert result.verified >= sum(map(len, expected.values())) and result.candidates >= result.verified
    assert np.isfinite(list(result.seconds.values())).all()


def test_verification_in_bounded_chunks_equals_all_at_once(monkeypatch):
    import pyarrow as pa

    import app.data.near_dedup as nd
    from app.core.minhash import jaccard, shingle_hashes

    texts = _corpus(60)
    pairs = np.array(list(itertools.combinations(range(len(texts)), 2)))
    params = nd.MinHashParams(threshold=0.8)
    sets = [nd.shingle_group(np.arange(len(texts)), params, pa.table({"id": np.arange(len(texts)), "text": texts}))]
    expected = [[a, b] for a, b in pairs if jaccard(shingle_hashes(texts[a]), shingle_hashes(texts[b])) >= 0.8]
    monkeypatch.setattr(nd, "_VERIFY_CHUNK", 3000)  # many chunks of a few pairs each
    assert nd.verify_pairs(pairs, sets, params).tolist() == expected and len(expected) >= 10


def test_pairs_are_routed_by_pair_so_duplicates_from_two_shards_meet_in_one_part():
    from app.data.near_dedup import route_pairs

    rng = np.random.default_rng(0)
    a = rng.integers(0, 1 << 40, 5000)
    pairs = np.stack([a, a + rng.integers(1, 1000, 5000)], axis=1)
    one, two = route_pairs(pairs, 3), route_pairs(pairs[::-1].copy(), 3)  # the same pairs, found in another order
    assert sorted(map(tuple, np.concatenate(one).tolist())) == sorted(map(tuple, pairs.tolist()))
    assert all({tuple(x) for x in p.tolist()} == {tuple(x) for x in q.tolist()} for p, q in zip(one, two))
    assert min(len(p) for p in one) > 1000  # spread over every part
    assert [len(p) for p in route_pairs(pairs, 1)] == [5000] and route_pairs(pairs[:0], 2)[1].shape == (0, 2)
