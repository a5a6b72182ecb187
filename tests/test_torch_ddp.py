"""OnTheFlyRawDataset under DistributedSampler and DDP: torch.distributed with the gloo backend, 2 processes on
CPU. Every (rank, epoch, index) draws its own noise, no two ranks share noise (not even the index
DistributedSampler repeats to even out the ranks), DataLoader workers inherit the rank, and a rerun
gives the same samples."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

LENGTH, PATCH, SEED, EPOCHS = 5, 16, 7, 2  # 5 items on 2 ranks: DistributedSampler repeats one index


def _dataset(**kw):
    from noisesim.torch_data import OnTheFlyRawDataset

    return OnTheFlyRawDataset("builtin", "SonyA7S2", length=LENGTH, patch=PATCH, iso=1600, seed=SEED, **kw)


def _rank_main(rank: int, world: int, init: str, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    from noisesim.torch_data import make_loader

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        ds = _dataset()  # the rank comes from torch.distributed, not from an argument
        sampler = DistributedSampler(ds, shuffle=True, seed=0)
        # rank 1 reads through a spawned DataLoader worker (no process group there): the rank must travel with the dataset
        loader = make_loader(ds, batch_size=2, num_workers=rank, sampler=sampler)
        model = DistributedDataParallel(torch.nn.Conv2d(4, 4, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        rows = []
        for epoch in range(EPOCHS):
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)
            for batch in loader:
                loss = ((model(batch["noisy"] * batch["ratio"].view(-1, 1, 1, 1).float()) - batch["clean"]) ** 2).mean()
                opt.zero_grad()
                loss.backward()  # gradients all-reduced across the two ranks
                opt.step()
                for k in range(len(batch["index"])):
                    rows.append((epoch, int(batch["index"][k]), batch["noisy"][k].numpy(), batch["clean"][k].numpy()))
        weights = next(model.parameters()).detach().numpy().copy()
        np.savez(out, epoch=[r[0] for r in rows], index=[r[1] for r in rows], noisy=np.stack([r[2] for r in rows]),
                 clean=np.stack([r[3] for r in rows]), weights=weights)
    finally:
        dist.destroy_process_group()


def _run_ranks(tmp: Path, tag: str) -> list[dict]:
    ctx = mp.get_context("spawn")
    init = f"file://{tmp / ('rdzv-' + tag)}"
    procs = [ctx.Process(target=_rank_main, args=(r, 2, init, str(tmp / f"{tag}-{r}.npz"))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [dict(np.load(tmp / f"{tag}-{r}.npz")) for r in range(2)]


@pytest.mark.slow
def test_ddp_ranks_draw_distinct_reproducible_noise(tmp_path):
    ranks = _run_ranks(tmp_path, "a")
    # Every (epoch, index) of the dataset is served, one index per epoch by both ranks (the sampler's padding).
    for e in range(EPOCHS):
        served = [sorted(r["index"][r["epoch"] == e].tolist()) for r in ranks]
        assert set(served[0]) | set(served[1]) == set(range(LENGTH))
        assert len(served[0]) == len(served[1]) == (LENGTH + 1) // 2
    # No two samples anywhere share their noise: the noisy frames are pairwise different, including the
    # index both ranks drew in the same epoch.
    noisy = np.concatenate([r["noisy"] for r in ranks]).reshape(2 * EPOCHS * ((LENGTH + 1) // 2), -1)
    for a in range(len(noisy)):
        for b in range(a + 1, len(noisy)):
            assert not np.array_equal(noisy[a], noisy[b]), (a, b)
    dup = [(e, i) for e in range(EPOCHS) for i in set(ranks[0]["index"][ranks[0]["epoch"] == e]) & set(ranks[1]["index"][ranks[1]["epoch"] == e])]
    assert len(dup) == EPOCHS, "DistributedSampler repeats one index per epoch across the two ranks"
    # Each rank's samples are exactly what a fresh dataset with that rank draws (also in the DataLoader worker of
    # rank 1): a rerun gives the same samples.
    for rank, r in enumerate(ranks):
        ref = _dataset(rank=rank)
        for k in range(len(r["index"])):
            ref.set_epoch(int(r["epoch"][k]))
            item = ref[int(r["index"][k])]
            assert np.array_equal(item["noisy"].numpy(), r["noisy"][k])
            assert np.array_equal(item["clean"].numpy(), r["clean"][k])
    # DDP kept the replicas in sync.
    assert np.array_equal(ranks[0]["weights"], ranks[1]["weights"])
    # The streams of a rank differ from the single-process ones (rank 0 included).
    single = _dataset()
    single.set_epoch(int(ranks[0]["epoch"][0]))
    assert not np.array_equal(single[int(ranks[0]["index"][0])]["noisy"].numpy(), ranks[0]["noisy"][0])
