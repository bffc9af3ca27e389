import pandas as pd
from PIL import Image

from factories import make_scan
from synthscan.cli import main
from synthscan.io.dicom import write_scan
from synthscan.io.manifest import write_manifest


def _cohort(tmp_path, rng, n=3):
    rows = []
    for i in range(n):
        write_scan(tmp_path / "dicom" / f"s{i}.dcm", make_scan(rng))
        rows.append({"study_id": f"s{i}", "patient_id": f"p{i}", "path": f"dicom/s{i}.dcm",
                     "views": "anterior+posterior", "metastasis": i % 2, "amyloid_grade": i, "site": "toy"})
    return write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")


def test_show_renders_manifest_folder_and_file(tmp_path, rng, capsys):
    manifest = _cohort(tmp_path, rng)
    for source in (manifest, tmp_path / "dicom", tmp_path / "dicom" / "s0.dcm"):
        out = tmp_path / f"{source.name}.png"
        assert main(["show", str(source), "--out", str(out)]) == 0
        image = Image.open(out)
        assert image.mode == "L" and image.width > 0
        assert "wrote" in capsys.readouterr().out


def test_show_windowing_is_inverted(tmp_path, rng):
    from synthscan.render import render_scan
    scan = make_scan(rng)
    pixels = render_scan(scan).load()
    # zero counts never occur in the toy scan; the hot patch (top-left) must be darker than the rest
    assert pixels[1, 1] < pixels[scan.shape[1] - 2, scan.shape[0] - 2]


def test_show_bad_input_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["show", str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")]) == 2
    assert "no DICOM files" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_show_phantom_manifest_captions_labels(toy_phantom_cohort, tmp_path, capsys):
    from synthscan.commands.show import _caption
    from synthscan.io.manifest import read_manifest

    out = tmp_path / "sheet.png"
    assert main(["show", str(toy_phantom_cohort), "--out", str(out), "--max", "4"]) == 0
    assert "4 scans" in capsys.readouterr().out
    frame = read_manifest(toy_phantom_cohort)
    captions = [_caption(row) for row in frame.to_dict("records")]
    assert all("elm-mdp" in c for c in captions)
    assert all(("normal" in c) or ("metastasis" in c) or ("amyloid" in c) for c in captions)
