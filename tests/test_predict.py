"""affectlab-predict: folders, videos and photographs in, one OpenFace-style row per face per
frame out; ensembles, thresholds, and the messages for what cannot be predicted on."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from affectlab.data.clips import Video
from affectlab.predict import predict
from affectlab.predict.faces import FaceCutter
from affectlab.predict.media import InputError, UnreadableInput
from affectlab.predict.runs import Predictor, RunsError
from affectlab.predict.table import FRAME_COLUMNS, au_column, prediction_columns

from .conftest import compose_config, train_tiny_run


@pytest.fixture(scope="module")
def runs(tiny_runs: list[Path]) -> list[Path]:
    return tiny_runs


@pytest.fixture(scope="module")
def faces(runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 6 synthetic faces (of the runs' benchmark) in two sub-folders, and one
    damaged file."""
    folder = tmp_path_factory.mktemp("faces")
    images = sorted((runs[0].parent / "synthetic").rglob("*.png"))[:6]
    for k, image in enumerate(images):
        target = folder / f"part{k % 2}" / f"face{k}.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(image, target)
    (folder / "part0" / "damaged.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not read")
    return folder


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_au_columns_are_named_by_facs_number():
    assert [au_column(n) for n in ("AU1", "au12", "6", "brow")] == ["AU01", "AU12", "AU06",
                                                                      "brow"]
    columns = prediction_columns({"au": ["AU1", "AU2"], "expr": ["neutral", "happy"],
                                  "va": ["valence", "arousal"]})
    assert columns == ["AU01_c", "AU02_c", "AU01_p", "AU02_p", "expr_neutral", "expr_happy",
                       "expression", "valence", "arousal"]


def test_a_folder_gives_one_row_per_face_and_skips_what_it_cannot_read(runs, faces, tmp_path):
    predictor = Predictor(runs[:1])
    cutter = FaceCutter(predictor.reading)
    out = tmp_path / "faces.csv"
    summary = predict(faces, predictor, cutter, out, batch_size=4, progress=False)
    columns, rows = read_rows(out)
    assert columns == [*FRAME_COLUMNS, *prediction_columns(predictor.label_names)]
    assert len(rows) == summary.rows == summary.faces == 6
    assert {r["file"] for r in rows} == {f"part{k % 2}/face{k}.png" for k in range(6)}
    assert len(summary.skipped) == 1 and "damaged.jpg" in summary.skipped[0]
    names = predictor.label_names["au"]
    thresholds = predictor.thresholds["au"]
    for row in rows:
        assert row["success"] == "1" and row["frame"] == "1"
        probabilities = [float(row[f"{au_column(n)}_p"]) for n in names]
        occurrence = [int(row[f"{au_column(n)}_c"]) for n in names]
        # the occurrence columns apply the run's stored thresholds (the CSV rounds to 4 places)
        for p, t, c in zip(probabilities, thresholds, occurrence):
            assert c == int(p >= t) or abs(p - t) <= 1e-4
        expr = [float(row[f"expr_{n}"]) for n in predictor.label_names["expr"]]
        assert abs(sum(expr) - 1) < 1e-3
        assert row["expression"] == predictor.label_names["expr"][int(np.argmax(expr))]
        assert -1 <= float(row["valence"]) <= 1 and -1 <= float(row["arousal"]) <= 1


def test_the_csv_holds_what_the_run_predicts_for_the_same_faces(runs, faces, tmp_path):
    predictor = Predictor(runs[:1])
    out = tmp_path / "faces.csv"
    predict(faces, predictor, FaceCutter(predictor.reading), out, progress=False)
    _, rows = read_rows(out)
    size = predictor.reading["image_size"]
    pixels = np.stack([np.asarray(Image.open(faces / r["file"]).convert("RGB")
                                  .resize((size, size), Image.BILINEAR)) for r in rows])
    direct = predictor.runs[0].predict({"image": torch.from_numpy(pixels).permute(0, 3, 1, 2)})
    written = np.array([[float(r[f"{au_column(n)}_p"]) for n in predictor.label_names["au"]]
                        for r in rows])
    assert np.allclose(written, direct["au"].numpy(), atol=1e-4)


def test_a_video_is_streamed_every_kth_frame_with_timestamps(runs, faces, tmp_path):
    import av

    video = tmp_path / "clip.mp4"
    pictures = sorted(faces.rglob("face*.png"))
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for k in range(12):
            picture = Image.open(pictures[k % len(pictures)]).convert("RGB").resize((32, 32))
            for packet in stream.encode(av.VideoFrame.from_image(picture)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    predictor = Predictor(runs[:1])
    out = tmp_path / "clip.csv"
    summary = predict(video, predictor, FaceCutter(predictor.reading), out, every=5,
                      batch_size=2, progress=False)
    _, rows = read_rows(out)
    assert summary.frames == 3 and [r["frame"] for r in rows] == ["1", "6", "11"]
    assert [round(float(r["timestamp"]), 3) for r in rows] == [0.0, 0.5, 1.0]
    assert {r["file"] for r in rows} == {"clip.mp4"}


def test_a_video_that_cannot_be_decoded_is_named(runs, tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00" * 2048)
    predictor = Predictor(runs[:1])
    with pytest.raises(UnreadableInput, match="broken.mp4"):
        predict(video, predictor, FaceCutter(predictor.reading), tmp_path / "out.csv",
                progress=False)
    assert not list(tmp_path.glob("*.csv")) and not list(tmp_path.glob(".out.csv*"))


def test_detected_faces_a_photograph_gives_one_and_a_blank_picture_success_0(runs, tmp_path):
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    Image.new("RGB", (160, 160), (90, 120, 90)).save(tmp_path / "blank.png")
    predictor = Predictor(runs)                 # two runs: an ensemble
    cutter = FaceCutter(predictor.reading, faces="detect")
    out = tmp_path / "photos.jsonl"
    summary = predict(tmp_path, predictor, cutter, out, progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary.faces == 1 and summary.frames_without_face == 1
    astronaut, blank = rows
    assert astronaut["file"] == "astronaut.png" and astronaut["success"] == 1
    assert astronaut["confidence"] > 0.99 and 150 < astronaut["face_x"] < 220
    assert blank["success"] == 0 and blank["AU01_p"] is None and blank["valence"] is None


def test_an_ensemble_averages_its_runs(runs, faces, tmp_path):
    one, two, both = Predictor(runs[:1]), Predictor(runs[1:]), Predictor(runs)
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1)
                       for p in sorted(faces.rglob("face*.png"))])
    first, second, mean = one({"image": pixels}), two({"image": pixels}), both({"image": pixels})
    for task in mean:
        assert np.allclose(mean[task], (first[task] + second[task]) / 2, atol=1e-6)
    assert np.allclose(both.thresholds["au"],
                       (np.array(one.thresholds["au"]) + two.thresholds["au"]) / 2)


def test_runs_of_other_label_sets_are_refused_naming_both(runs, tmp_path):
    au_only = train_tiny_run(runs[0].parent / "synthetic", tmp_path / "au_only", "[au]")
    with pytest.raises(RunsError, match="au_only.*tasks"):
        Predictor([runs[0], au_only])


def test_thresholds_from_an_evaluation_must_fit_the_labels(runs, tmp_path):
    predictor = Predictor(runs[:1])
    names = predictor.label_names["au"]
    good = {"tasks": {"au": {"labels": names, "thresholds": [0.3] * len(names)}}}
    (tmp_path / "metrics.json").write_text(json.dumps(good))
    assert Predictor(runs[:1], thresholds=tmp_path).thresholds["au"] == [0.3] * len(names)
    bad = {"tasks": {"au": {"labels": names[:-1], "thresholds": [0.3] * (len(names) - 1)}}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(RunsError, match="bad.json.*'au'"):
        Predictor(runs[:1], thresholds=tmp_path / "bad.json")


def test_an_error_part_way_leaves_no_table(runs, faces, tmp_path):
    predictor = Predictor(runs[:1])
    out = tmp_path / "out.csv"
    with pytest.raises(RuntimeError, match="out of memory"):
        predict(faces, _Failing(predictor), FaceCutter(predictor.reading), out, batch_size=2,
                progress=False)
    assert list(tmp_path.iterdir()) == []       # neither the table nor its temporary file


class _Failing:
    """A predictor that fails on its second batch."""

    def __init__(self, predictor: Predictor) -> None:
        self.label_names, self.thresholds = predictor.label_names, predictor.thresholds
        self.clip = None
        self.predictor, self.calls = predictor, 0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("out of memory")
        return self.predictor(batch)


@pytest.mark.parametrize("case", ["missing input", "empty folder", "no checkpoint",
                                  "existing output"])
def test_the_command_names_what_is_wrong(case, runs, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "exists.csv").write_text("keep me")
    picture = tmp_path / "face.png"
    Image.new("RGB", (32, 32)).save(picture)
    source, run_dir, out, expected = {
        "missing input": (tmp_path / "nowhere", runs[0], "o.csv", "nowhere does not exist"),
        "empty folder": (tmp_path / "empty", runs[0], "o.csv", "holds no image or video"),
        "no checkpoint": (picture, tmp_path / "unfinished", "o.csv", "unfinished has no"),
        "existing output": (picture, runs[0], "exists.csv", "refusing to overwrite"),
    }[case]
    result = subprocess.run([sys.executable, "-m", "affectlab.predict", str(source), "--runs",
                             str(run_dir), "--out", str(tmp_path / out), "--device", "cpu"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-1500:]
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "exists.csv").read_text() == "keep me"
    assert not (tmp_path / "o.csv").exists()


def test_the_console_script_writes_the_table(runs, faces, tmp_path):
    script = Path(sys.executable).with_name("affectlab-predict")
    result = subprocess.run([str(script), str(faces), "--runs", str(runs[0]), "--out",
                             str(tmp_path / "out.csv"), "--device", "cpu"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "6 face(s)" in result.stderr and "1 file(s) could not be read" in result.stderr
    assert len(read_rows(tmp_path / "out.csv")[1]) == 6


# ------------------------------------------------------------------------------ clip runs
@pytest.fixture(scope="module")
def clip_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny TSAV run on synthetic clips without the landmark-mask channel."""
    from affectlab.train import run

    from .test_synthetic_clips import TINY_CLIPS

    folder = tmp_path_factory.mktemp("clip_run")
    overrides = [*TINY_CLIPS, "dataset.clip.mask=false", "model.mask=false",
                 "dataset.clip.rule=repeat", "trainer.max_steps=2"]
    run(compose_config(folder / "clips", overrides), folder / "run")
    return folder / "run"


def lossless_video(video: Video, root: Path, path: Path, sample_rate: int) -> Path:
    """One synthetic clip video (its frames and its sound) as an MKV without loss: FFV1
    frames, 16-bit PCM sound, so predict decodes what the dataset reads."""
    import av

    from affectlab.data.audio import read_wav

    with av.open(str(path), "w") as container:
        picture_stream = container.add_stream("ffv1", rate=int(video.fps))
        sound_stream = container.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        first = Image.open(root / video.frames[0])
        picture_stream.width, picture_stream.height = first.size
        picture_stream.pix_fmt = "bgr0"
        for name in video.frames:
            frame = av.VideoFrame.from_image(Image.open(root / name).convert("RGB"))
            for packet in picture_stream.encode(frame):
                container.mux(packet)
        samples = (read_wav(root / video.audio, sample_rate=sample_rate).numpy() * 32768)
        sound = av.AudioFrame.from_ndarray(samples.clip(-32768, 32767).astype(np.int16)[None],
                                           format="s16", layout="mono")
        sound.sample_rate = sample_rate
        for packet in sound_stream.encode(sound):
            container.mux(packet)
        for stream in (picture_stream, sound_stream):
            for packet in stream.encode():
                container.mux(packet)
    return path


def test_a_clip_run_predicts_a_video_as_its_dataset_gives_the_same_frames(clip_run, tmp_path):
    """The clip and sound predict cuts from a video equal the dataset's samples: the same
    outputs for the labelled frames of a test video."""
    from affectlab.inference import load_run

    loaded = load_run(clip_run, data=True)
    test = loaded.data.test
    video = test.videos[0]
    path = lossless_video(video, Path(test.table.root), tmp_path / "video.mkv",
                          int(loaded.config.dataset.sample_rate))
    predictor = Predictor([clip_run])
    assert predictor.clip is not None and predictor.clip.rule == "repeat"
    out = tmp_path / "clips.csv"
    summary = predict(path, predictor, FaceCutter(predictor.reading), out, every=1,
                      batch_size=3, progress=False)
    _, rows = read_rows(out)
    assert summary.frames == len(rows) == len(video.frames)
    rows_of_video = [r for r in range(len(test)) if test.video_of_row[r] == 0]
    samples = torch.utils.data.default_collate([test[r] for r in rows_of_video])
    expected = loaded.predict({"clip": samples["clip"], "audio": samples["audio"]})
    names = predictor.label_names["au"]
    # the outputs move with the frames (so equal outputs mean equal inputs)
    assert np.ptp(expected["va"].numpy(), axis=0).min() > 1e-3
    for k, row in enumerate(rows_of_video):
        written = rows[int(test.frame_of_row[row])]
        assert written["success"] == "1"
        assert np.allclose([float(written[f"{au_column(n)}_p"]) for n in names],
                           expected["au"][k].numpy(), atol=2e-4)
        assert np.allclose([float(written["valence"]), float(written["arousal"])],
                           expected["va"][k].numpy(), atol=2e-4)


def test_a_clip_run_skips_images_and_refuses_the_mask_channel(clip_run, faces, tmp_path):
    predictor = Predictor([clip_run])
    with pytest.raises(InputError, match="nothing under"):
        predict(faces, predictor, FaceCutter(predictor.reading), tmp_path / "o.csv",
                progress=False)
    from affectlab.train import run

    from .test_synthetic_clips import TINY_CLIPS

    run(compose_config(tmp_path / "clips", [*TINY_CLIPS, "trainer.max_steps=1"]),
        tmp_path / "mask")
    with pytest.raises(ValueError, match="68 landmarks"):
        Predictor([tmp_path / "mask"])
