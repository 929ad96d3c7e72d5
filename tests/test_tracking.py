"""A run killed while DVCLive writes its files must still resume (the CI failure of stop 9)."""
import json

from ragtune.tracking import open_live, repair_live_dir


def _log_steps(live_dir, n):
    live = open_live(live_dir, resume=False, dvcyaml=False, save_dvc_exp=False)
    for step in range(n):
        live.step = step
        live.log_metric("train/loss", 1.0 / (step + 1))
        live.log_metric("eval/ndcg@10", 0.1 * step)
        live.next_step()
    live.end()


def test_resume_after_kill_mid_write(tmp_path):
    live_dir = tmp_path / "live"
    _log_steps(live_dir, 3)
    # What SIGKILL left in CI: metrics.json truncated to nothing, and a row cut in half.
    (live_dir / "metrics.json").write_text("")
    loss = live_dir / "plots" / "metrics" / "train" / "loss.tsv"
    loss.write_text(loss.read_text() + "1763\t3\t0.2")

    live = open_live(live_dir, resume=True, dvcyaml=False, save_dvc_exp=False)
    assert live.step == 3  # the step after the last complete one, as DVCLive resumes a clean folder
    assert live.summary["eval"]["ndcg@10"] == 0.2
    assert loss.read_text().endswith("\n") and len(loss.read_text().splitlines()) == 4  # header + 3 rows
    live.log_metric("train/loss", 0.1)
    live.end()
    assert json.loads((live_dir / "metrics.json").read_text())["train"]["loss"] == 0.1


def test_clean_folder_is_left_alone(tmp_path):
    live_dir = tmp_path / "live"
    _log_steps(live_dir, 2)
    before = {p: p.read_bytes() for p in live_dir.rglob("*") if p.is_file()}
    assert repair_live_dir(live_dir) == []
    assert {p: p.read_bytes() for p in live_dir.rglob("*") if p.is_file()} == before
