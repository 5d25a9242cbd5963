"""The download command's own usage: bad options, and the module entry point in a process of its own."""

from __future__ import annotations

from download_harness import one_line, run, run_process


def test_unknown_variant_is_bad_usage(models, capsys):
    code, _, err = run(capsys, "--models-dir", str(models), "--variant", "best")
    assert code == 2 and "--variant" in one_line(err)


def test_module_entry_point_honours_hf_endpoint(hub, models):
    proc = run_process(hub.url, "--models-dir", str(models), "--only", "face", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (models / "insightface" / "models" / "antelopev2" / "glintr100.onnx").is_file()
