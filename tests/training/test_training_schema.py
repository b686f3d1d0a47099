import json
from pathlib import Path

from autovla_agent.training.dataset_io import load_samples, sample_from_dict, sample_to_dict
from autovla_agent.training.schema import SAMPLES_NAME
from autovla_agent.training.validate import main as validate_main
from autovla_agent.training.validate import validate_dataset


def _rewrite_row(root: Path, row: int, edit) -> None:
    path = root / SAMPLES_NAME
    lines = path.read_text().splitlines()
    data = json.loads(lines[row - 1])
    edit(data)
    lines[row - 1] = json.dumps(data)
    path.write_text("\n".join(lines) + "\n")


def test_schema_roundtrip_dict_equal(dataset_dir):
    samples = load_samples(dataset_dir)
    assert len(samples) == 8 and sum(s.is_slow for s in samples) == 2
    again = sample_from_dict(json.loads(json.dumps(sample_to_dict(samples[3]))))
    assert again == samples[3]


def test_validator_clean_dataset_ok(dataset_dir):
    report = validate_dataset(dataset_dir, decode_images=True)
    assert report.ok, report.summary()
    assert report.num_rows == 8 and report.num_good == 8 and report.num_slow == 2


def test_validator_bad_rows_reported_with_row_numbers(dataset_dir):
    (dataset_dir / "images/front/0001_2.png").unlink()  # row 2: missing image
    _rewrite_row(dataset_dir, 4, lambda d: d["future"]["poses_ego"][3].__setitem__(0, float("nan")))
    _rewrite_row(dataset_dir, 6, lambda d: d.__setitem__("command", "fly north"))
    _rewrite_row(dataset_dir, 7, lambda d: d["future"]["poses_ego"].pop())
    report = validate_dataset(dataset_dir)
    by_row = {e.row: e.message for e in report.errors}
    assert set(by_row) == {2, 4, 6, 7}
    assert "0001_2.png" in by_row[2] and "missing" in by_row[2]
    assert "NaN" in by_row[4]
    assert "command" in by_row[6] and "fly north" in by_row[6]
    assert "9 poses" in by_row[7]
    assert report.num_good == 4 and not report.ok
    assert "row 6 (s0005)" in report.summary()


def test_validator_cli_exit_status_bad_dataset_one(dataset_dir, caplog):
    assert validate_main([str(dataset_dir)]) == 0
    _rewrite_row(dataset_dir, 1, lambda d: d.pop("ego"))
    assert validate_main([str(dataset_dir)]) == 1
    assert "row 1" in caplog.text and "ego" in caplog.text


def test_validator_missing_manifest_reports_manifest(tmp_path):
    report = validate_dataset(tmp_path)
    assert not report.ok and report.errors[0].row == 0 and "dataset.json" in str(report.errors[0])
