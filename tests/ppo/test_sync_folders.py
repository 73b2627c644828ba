"""vLLM adapter sync folders: a long PPO run keeps only the newest ``KEEP_SYNC_FOLDERS`` versions on disk."""
from app.ppo.driver import KEEP_SYNC_FOLDERS, prune_sync_folders


def test_prune_keeps_the_newest_versions_and_leaves_other_files(tmp_path):
    for v in range(1, 8):
        (tmp_path / f"v{v:06d}").mkdir()
        (tmp_path / f"v{v:06d}" / "adapter_model.safetensors").write_bytes(b"x")
    (tmp_path / "vnotes").mkdir()  # not a version folder: never touched
    prune_sync_folders(tmp_path, version=7)
    assert KEEP_SYNC_FOLDERS == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v000005", "v000006", "v000007", "vnotes"]


def test_prune_with_fewer_versions_than_kept_removes_nothing(tmp_path):
    for v in (1, 2):
        (tmp_path / f"v{v:06d}").mkdir()
    prune_sync_folders(tmp_path, version=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v000001", "v000002"]
