"""``starclf classify-batch`` (`glue_starclf.cli.batch`) on a LocalCluster of real
worker processes, with the tiny session-trained models of tests/training:
results identical to single-process ``starclf classify`` / `predict` (sources
on tile borders included), manifest errors, a failing field, idempotent
re-runs."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.table import Table

from glue_starclf.cli import batch
from glue_starclf.cli.main import main

# Reading the FITS outputs back: the 'nat' unit has no FITS form (the ECSV keeps it).
pytestmark = pytest.mark.filterwarnings("ignore::astropy.units.UnitsWarning")

DISTANCE = 10.0
#: Keys a batch adds to the metadata of ``starclf classify``'s table (and
#: ``bands``, which names the same files by their resolved paths).
BATCH_META = ("bands", "field", "batch_fingerprint")


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """Three 512 x 512 mock fields written as FITS: name -> (images, truth catalog)."""
    from glue_starclf.sim.mosaic import random_field, write_mosaic
    root = tmp_path_factory.mktemp("batch-fields")
    out = {}
    for seed, name in ((1, "ngc-a"), (2, "ngc-b"), (3, "ngc-c")):
        mock = random_field(seed=seed, shape=(512, 512), n_sources=40, distance_mpc=DISTANCE)
        paths = write_mosaic(mock, root / name, prefix=name)
        out[name] = ({b: str(p) for b, p in paths.items() if b != "truth"}, str(paths["truth"]))
    return out


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two single-threaded worker processes."""
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def one_thread():
    """Torch on one thread, like the batch tasks (CPU results depend on the thread count)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def entry(fields, name, out, catalog=None, **extra):
    images, truth = fields[name]
    return {"name": name, "images": dict(images), "catalog": catalog or truth,
            "distance_mpc": DISTANCE, "out": str(out), **extra}


def write_manifest(path, entries, **top):
    path = Path(path)
    path.write_text(yaml.safe_dump({**top, "fields": entries}, sort_keys=False))
    return path


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def same_values(a, b):
    """Float columns equal bit for bit (NaN where NaN); others equal as text (FITS reads
    strings as bytes, empty ones masked)."""
    if a.dtype.kind == "f":
        def f(col):
            return np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
        return np.array_equal(f(a), f(b), equal_nan=True)
    text = lambda col: [v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
                        for v in np.ma.filled(col, "" if col.dtype.kind in "SU" else 0)]
    return text(a) == text(b)


def assert_identical(a, b):
    """Same columns, units and values, same metadata."""
    assert a.colnames == b.colnames
    assert len(a) == len(b)
    for c in a.colnames:
        assert a[c].unit == b[c].unit, c
        assert same_values(a[c], b[c]), c
    strip = lambda meta: {k: v for k, v in meta.items()  # noqa: E731
                          if str(k).lower() not in BATCH_META}
    assert strip(a.meta) == strip(b.meta)


def classify_single(fields, name, out, models, catalog=None, region=None):
    """``starclf classify`` of one field in this process."""
    images, truth = fields[name]
    argv = ["classify", "--distance-mpc", DISTANCE, "--out", out, "--models", models]
    for band, path in images.items():
        argv += ["--image", f"{band}={path}"]
    if catalog != "detect":
        argv += ["--catalog", catalog or truth]
    if region:
        argv += ["--region", region]
    assert main([str(a) for a in argv]) == 0
    return Table.read(out)


def test_three_fields_on_two_workers_equal_single_process(tmp_path, fields, client,
                                                          trained_models, one_thread, capsys):
    import os
    info = client.scheduler_info()["workers"]
    assert len(info) == 2
    pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    models = trained_models["models"]
    (tmp_path / "out").mkdir()
    manifest = write_manifest(tmp_path / "galaxies.yaml", [
        entry(fields, "ngc-a", "out/a.ecsv"),
        entry(fields, "ngc-b", "out/b.ecsv", catalog="detect"),
        entry(fields, "ngc-c", "out/c.fits", region="0,100,400,512"),
    ], models=str(models), tile=192)
    status, out, err = run(capsys, "classify-batch", manifest,
                           "--scheduler", client.scheduler.address)
    assert status == 0, err
    assert "merged table:" in out

    refs = {"ngc-a": classify_single(fields, "ngc-a", tmp_path / "ref-a.ecsv", models),
            "ngc-b": classify_single(fields, "ngc-b", tmp_path / "ref-b.ecsv", models,
                                     catalog="detect"),
            "ngc-c": classify_single(fields, "ngc-c", tmp_path / "ref-c.fits", models,
                                     region="0,100,400,512")}
    outs = {"ngc-a": "out/a.ecsv", "ngc-b": "out/b.ecsv", "ngc-c": "out/c.fits"}
    for name, ref in refs.items():
        assert len(ref) > 0
        got = Table.read(tmp_path / outs[name])
        assert_identical(got, ref)
        assert {str(k).lower(): v for k, v in got.meta.items()}["field"] == name
    assert 0 < len(refs["ngc-c"]) < 40  # the region kept part of the catalog
    # the detected field records its CI cut, as starclf classify does; catalogs none
    detected = Table.read(tmp_path / "out/b.ecsv").meta
    assert detected["detection_ci_min"] == pytest.approx(refs["ngc-b"].meta["detection_ci_min"])
    assert detected["detection_stellar_ci_source"] == refs["ngc-b"].meta[
        "detection_stellar_ci_source"]
    assert "detection_ci_min" not in Table.read(tmp_path / "out/a.ecsv").meta

    merged = Table.read(tmp_path / "galaxies-merged.ecsv")
    assert merged.colnames[0] == "field"
    assert len(merged) == sum(len(r) for r in refs.values())
    for name, ref in refs.items():
        rows = merged[merged["field"] == name]
        for c in ref.colnames:
            assert same_values(rows[c], ref[c]), (name, c)
    # models loaded once per worker process: one ensemble per family in each cache
    spec = batch._model_spec(models)
    assert set(client.run(batch._load_models, spec).values()) == {2}


def test_tile_borders_and_batches_equal_predict(tmp_path, fields, client, trained_models,
                                                one_thread):
    """Sources on tile borders, mosaic edges and off the image, in shuffled order, in
    network batches of 7 over tiles of 64 px: identical to `predict` in one process."""
    from glue_starclf.io.catalogs import read_catalog
    from glue_starclf.io.mosaic import open_mosaic
    from glue_starclf.core.predict import load_ensemble, predict
    from glue_starclf.io.writers import write_table
    images, truth = fields["ngc-a"]
    border = np.array([63.5, 63.49999, 64.0, 127.5, 128.0, 255.5, 0.0, 511.0, 511.4, -0.6,
                       3.0, 508.9, -20.0, 530.0])
    rng = np.random.default_rng(4)
    known = Table.read(truth)
    xs = np.r_[border, rng.choice(border, border.size), known["x"]]
    ys = np.r_[rng.choice(border, border.size), border, known["y"]]
    order = rng.permutation(xs.size)
    cat = Table({"id": np.arange(1, xs.size + 1), "x": xs[order], "y": ys[order]})
    cat.write(tmp_path / "border.ecsv")
    manifest = write_manifest(tmp_path / "m.yaml", [
        entry(fields, "ngc-a", "a.ecsv", catalog=str(tmp_path / "border.ecsv"))], tile=64)
    models = trained_models["models"]
    outcomes, merged = batch.run_batch(manifest, client, models=models, batch=7)
    assert [o.status for o in outcomes] == ["done"] and merged.status == "done"

    mosaic = open_mosaic(images)
    sources = read_catalog(tmp_path / "border.ecsv", wcs=mosaic.wcs, shape=mosaic.shape)
    ref = predict(mosaic, sources, DISTANCE, classifier=load_ensemble("classifier", models),
                  physical=load_ensemble("physical", models), batch=7)
    write_table(ref, tmp_path / "ref.ecsv")
    got = Table.read(tmp_path / "a.ecsv")
    assert_identical(got, Table.read(tmp_path / "ref.ecsv"))
    flags = " ".join(np.ma.filled(got["flags"], ""))
    assert "edge" in flags and "outside" in flags
    # the batches really were cut from several tiles each
    pieces = batch.plan_pieces(sources["x"], sources["y"], mosaic.shape, 64, 64, 7)
    assert len(pieces) > len(sources) // 7 + 1


def test_classifier_taking_the_stellar_ci_gets_the_fields_measured_value(
        fields, client, trained_models, tmp_path, one_thread):
    """Measured once per field on the whole mosaic, as `predict` measures it."""
    import torch

    from glue_starclf.core.checkpoints import load_card, save_checkpoint
    from glue_starclf.core.networks import StarClassifier
    from glue_starclf.core.predict import load_ensemble, predict
    from glue_starclf.io.catalogs import read_catalog
    from glue_starclf.io.mosaic import open_mosaic
    from glue_starclf.io.writers import write_table
    models = tmp_path / "models"
    models.mkdir()
    for p in Path(trained_models["models"]).glob("physical-*"):
        (models / p.name).write_bytes(p.read_bytes())
    card = load_card(trained_models["classifier"])
    keep = {k: v for k, v in card.items() if k not in ("_path", "sha256", "weights")}
    keep["kwargs"] = {"stellar_ci": True}
    torch.manual_seed(0)
    save_checkpoint(StarClassifier(stellar_ci=True), models / "classifier-ci.safetensors", keep)
    # a field whose stellar CI can be measured (not the default)
    images, truth = fields["ngc-a"]
    manifest = write_manifest(tmp_path / "m.yaml", [entry(fields, "ngc-a", "a.ecsv")], tile=128)
    outcomes, _ = batch.run_batch(manifest, client, models=models, batch=16)
    assert [o.status for o in outcomes] == ["done"]
    mosaic = open_mosaic(images)
    ref = predict(mosaic, read_catalog(truth, wcs=mosaic.wcs, shape=mosaic.shape), DISTANCE,
                  classifier=load_ensemble("classifier", models),
                  physical=load_ensemble("physical", models), batch=16)
    write_table(ref, tmp_path / "ref.ecsv")
    got = Table.read(tmp_path / "a.ecsv")
    assert got.meta["stellar_ci_source"].startswith("measured in region")
    assert_identical(got, Table.read(tmp_path / "ref.ecsv"))


def test_model_flags_of_predict_survive_the_batch(fields, client, trained_models, tmp_path,
                                                  one_thread):
    """A distance outside the models' range flags every row, in the batch as in `predict`,
    beside the stamps' own flags."""
    from glue_starclf.core.predict import load_ensemble, predict
    from glue_starclf.io.catalogs import read_catalog
    from glue_starclf.io.mosaic import open_mosaic
    from glue_starclf.io.writers import write_table
    images, truth = fields["ngc-c"]
    models = trained_models["models"]
    manifest = write_manifest(tmp_path / "m.yaml",
                              [entry(fields, "ngc-c", "c.ecsv", distance_mpc=25.0)], tile=128)
    outcomes, _ = batch.run_batch(manifest, client, models=models, batch=16)
    assert [o.status for o in outcomes] == ["done"]
    mosaic = open_mosaic(images)
    ref = predict(mosaic, read_catalog(truth, wcs=mosaic.wcs, shape=mosaic.shape), 25.0,
                  classifier=load_ensemble("classifier", models),
                  physical=load_ensemble("physical", models), batch=16)
    write_table(ref, tmp_path / "ref.ecsv")
    got = Table.read(tmp_path / "c.ecsv")
    assert all("distance" in str(f).split(",") for f in got["flags"])
    assert_identical(got, Table.read(tmp_path / "ref.ecsv"))


def test_plan_pieces_cover_each_source_once_within_tile_and_halo():
    from glue_starclf.core.cutouts import stamp_centre
    rng = np.random.default_rng(0)
    shape, size, tile = (300, 500), 32, 100
    x = np.r_[rng.uniform(-10, 510, 200), 99.5, 100.0, 199.49, np.nan]
    y = np.r_[rng.uniform(-10, 310, 200), 99.5, 299.6, 0.0, 5.0]
    pieces = batch.plan_pieces(x, y, shape, size, tile, batch=16)
    seen = np.concatenate([p.index for p in pieces])
    assert sorted(seen.tolist()) == list(range(len(x)))
    ix, iy = stamp_centre(x, y)
    h = size // 2
    for p in pieces:
        assert np.all(p.index // 16 == p.batch)
        tx, ty = p.tile % 5, p.tile // 5
        x0, y0, x1, y1 = p.box
        assert tx * tile - h <= x0 and x1 <= (tx + 1) * tile + h
        assert ty * tile - h <= y0 and y1 <= (ty + 1) * tile + h
        cx, cy = ix[p.index], iy[p.index]
        on = (cx >= 0) & (cx < 500) & (cy >= 0) & (cy < 300)
        # the stamp of every source on the image lies in the box, up to the mosaic's edge
        assert np.all(np.maximum(cx[on] - h, 0) >= x0) and np.all(np.maximum(cy[on] - h, 0) >= y0)
        assert np.all(np.minimum(cx[on] - h + size, 500) <= x1)
        assert np.all(np.minimum(cy[on] - h + size, 300) <= y1)
    # (99.5, 99.5) is centred on pixel (100, 100): tile column 1, row 1
    assert next(p for p in pieces if 200 in p.index).tile == 1 * 5 + 1


def _base(tmp_path, fields):
    return {"fields": [entry(fields, "ngc-a", "a.ecsv"), entry(fields, "ngc-b", "b.ecsv")]}


@pytest.mark.parametrize("change, words", [
    (lambda d: d["fields"][1].pop("distance_mpc"), ("'ngc-b' (#2)", "'distance_mpc'", "missing")),
    (lambda d: d["fields"][1].update(distance_mpc=-3), ("'ngc-b'", "'distance_mpc'", "positive")),
    (lambda d: d["fields"][1].update(distance_mpc="far"), ("'ngc-b'", "'distance_mpc'")),
    (lambda d: d["fields"][0].update(catalogue="x.tab"), ("'ngc-a' (#1)", "'catalogue'",
                                                          "unknown key")),
    (lambda d: d["fields"][0].pop("catalog"), ("'ngc-a'", "'catalog'", "missing")),
    (lambda d: d["fields"][1]["images"].update(F999W="x.fits"), ("'ngc-b'", "'images'", "F999W")),
    (lambda d: d["fields"][1].update(images="f555.fits"), ("'ngc-b'", "'images'")),
    (lambda d: d["fields"][0].update(out="a.csv"), ("'ngc-a'", "'out'", ".ecsv")),
    (lambda d: d["fields"][1].update(out="a.ecsv"), ("'ngc-b'", "'out'", "'ngc-a'")),
    (lambda d: d["fields"][1].update(name="ngc-a"), ("'ngc-a' (#2)", "'name'", "#1")),
    (lambda d: d["fields"][1].pop("name"), ("field #2", "'name'", "missing")),
    (lambda d: d["fields"][0].update(region="1,2,3"), ("'ngc-a'", "'region'")),
    (lambda d: d["fields"].append("ngc-c"), ("field #3", "mapping")),
    (lambda d: d.update(tile=4), ("key 'tile'",)),
    (lambda d: d.update(merge="all.ecsv"), ("key 'merge'", "unknown key")),
    (lambda d: d.update(merged="all.txt"), ("key 'merged'",)),
    (lambda d: d.update(fields=[]), ("key 'fields'",)),
])
def test_manifest_errors_name_the_field_and_key(tmp_path, fields, change, words):
    doc = _base(tmp_path, fields)
    change(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(batch.ManifestError) as err:
        batch.read_manifest(path)
    for w in (str(path),) + words:
        assert w in str(err.value), str(err.value)


def test_manifest_error_is_one_line_and_writes_nothing(tmp_path, fields, capsys):
    doc = _base(tmp_path, fields)
    doc["fields"][1]["distance_mpc"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    status, out, err = run(capsys, "classify-batch", path, "--local-workers", "1")
    assert status == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("starclf: error:")]
    assert len(lines) == 1 and "'ngc-b'" in lines[0] and "'distance_mpc'" in lines[0]
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
    (tmp_path / "broken.yaml").write_text("fields: [\n")
    status, _, err = run(capsys, "classify-batch", tmp_path / "broken.yaml")
    assert status == 2 and "not valid YAML" in err
    status, _, err = run(capsys, "classify-batch")
    assert status == 2 and "MANIFEST" in err
    # no models: stops before any cluster starts
    (tmp_path / "empty").mkdir()
    doc["fields"][1]["distance_mpc"] = 5
    path.write_text(yaml.safe_dump(doc))
    status, _, err = run(capsys, "classify-batch", path, "--models", tmp_path / "empty")
    assert status == 2 and "no classifier models in" in err and "Traceback" not in err


def test_missing_file_fails_its_field_only_then_rerun_resumes(tmp_path, fields, client,
                                                              trained_models, capsys):
    models = trained_models["models"]
    good = entry(fields, "ngc-a", "a.ecsv")
    bad = entry(fields, "ngc-b", "b.ecsv")
    missing = str(tmp_path / "nowhere_f555w.fits")
    bad["images"] = {**bad["images"], "F555W": missing}
    manifest = write_manifest(tmp_path / "m.yaml", [good, bad], models=str(models))
    argv = ["classify-batch", manifest, "--scheduler", client.scheduler.address]
    status, out, err = run(capsys, *argv)
    assert status == 1
    assert "ngc-a: 40 sources; wrote" in out
    failed = [ln for ln in err.splitlines() if ln.startswith("starclf: field ngc-b failed:")]
    assert len(failed) == 1 and missing in failed[0] and "no such image file" in failed[0]
    assert (tmp_path / "a.ecsv").exists() and not (tmp_path / "b.ecsv").exists()
    assert not (tmp_path / "m-merged.ecsv").exists()
    first = (tmp_path / "a.ecsv").stat().st_mtime_ns

    # fixed: the complete field is skipped, the failed one done, the merged table written
    write_manifest(manifest, [good, entry(fields, "ngc-b", "b.ecsv")], models=str(models))
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    assert "ngc-a: skipped" in out and "ngc-b: 40 sources" in out
    assert (tmp_path / "a.ecsv").stat().st_mtime_ns == first
    assert len(Table.read(tmp_path / "m-merged.ecsv")) == 80

    # again, on a fresh local cluster: nothing to do, nothing rewritten
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.ecsv")}
    status, out, err = run(capsys, "classify-batch", manifest, "--local-workers", "1")
    assert status == 0, err
    assert out.count("skipped") == 3
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.ecsv")} == stamps

    # other models: the outputs are not this run's, so they are neither skipped nor replaced
    other = tmp_path / "models2"
    other.mkdir()
    for p in list(Path(models).glob("*")) + list(Path(trained_models["extra"]).glob("*")):
        (other / p.name).write_bytes(p.read_bytes())
    outcomes, merged = batch.run_batch(manifest, client, models=other, batch=5)
    assert [o.status for o in outcomes] == ["failed", "failed"] and merged is None
    assert all("--overwrite" in o.message for o in outcomes)
    outcomes, merged = batch.run_batch(manifest, client, models=other, batch=5,
                                       overwrite=True)
    assert [o.status for o in outcomes] == ["done", "done"] and merged.status == "done"
    # recomputed fields always refresh the merged table, even with the same fingerprint
    outcomes, merged = batch.run_batch(manifest, client, models=other, batch=5,
                                       overwrite=True)
    assert merged.status == "done"
    assert batch.run_batch(manifest, client, models=other, batch=5)[1].status == "skipped"

    # a class prior added beside the same members: the outputs are not this run's either
    from glue_starclf.core.class_prior import CLASS_PRIOR_FILE, ClassPrior, save_class_prior
    from glue_starclf.core.predict import load_ensemble
    hashes = load_ensemble("classifier", other).hashes
    save_class_prior(other / CLASS_PRIOR_FILE, ClassPrior(1.0, [0, 0, -30, 30], hashes))
    outcomes, merged = batch.run_batch(manifest, client, models=other, batch=5)
    assert [o.status for o in outcomes] == ["failed", "failed"] and merged is None
    outcomes, merged = batch.run_batch(manifest, client, models=other, batch=5,
                                       overwrite=True)
    assert merged.status == "done"
    result = Table.read(merged.out)
    assert set(result["class"]) == {4}
    assert result.meta["class_prior"]["log_prior"] == [0, 0, -30, 30]


def test_foreign_output_is_never_replaced_without_overwrite(tmp_path, fields, client,
                                                            trained_models):
    (tmp_path / "a.ecsv").write_text("not a table of this batch\n")
    manifest = write_manifest(tmp_path / "m.yaml", [entry(fields, "ngc-a", "a.ecsv"),
                                                    entry(fields, "ngc-c", "sub/c.ecsv")])
    outcomes, merged = batch.run_batch(manifest, client, models=trained_models["models"])
    assert [o.status for o in outcomes] == ["failed", "failed"] and merged is None
    assert "--overwrite" in outcomes[0].message
    assert "does not exist" in outcomes[1].message
    assert (tmp_path / "a.ecsv").read_text() == "not a table of this batch\n"
    assert not (tmp_path / "m-merged.ecsv").exists()


def test_failed_field_is_one_line_without_worker_tracebacks(tmp_path, fields, trained_models):
    """A truncated band file on a real local cluster: one line for its field, no dask
    "Compute Failed" block or traceback from the worker process."""
    import subprocess
    import sys
    good = entry(fields, "ngc-a", tmp_path / "a.ecsv")
    bad = entry(fields, "ngc-b", tmp_path / "b.ecsv")
    blob = Path(bad["images"]["F555W"]).read_bytes()
    cut = tmp_path / "ngc-b_f555w_cut.fits"
    cut.write_bytes(blob[:len(blob) // 2])
    bad["images"]["F555W"] = str(cut)
    manifest = write_manifest(tmp_path / "m.yaml", [good, bad],
                              models=str(trained_models["models"]))
    proc = subprocess.run([sys.executable, "-m", "glue_starclf.cli.main", "classify-batch",
                           str(manifest), "--local-workers", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    failed = [ln for ln in lines if ln.startswith("starclf: field ngc-b failed:")]
    assert len(failed) == 1 and f"{cut}: file ends early" in failed[0], proc.stderr
    for word in ("Traceback", "Compute Failed", "distributed.worker", "truncated"):
        assert word not in proc.stderr.replace("(a truncated download", ""), proc.stderr
    assert (tmp_path / "a.ecsv").exists() and not (tmp_path / "b.ecsv").exists()
