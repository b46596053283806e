"""The assess API: reports equal the metrics module, files and figures, prior checks, models."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

import data_pipelines as dp
from resprunet.assess import AssessError, Case, Method, MissingPriorError, Report, assess
from resprunet.assess import metrics as M
from resprunet.variational import tv_denoise

METRICS = ("psnr", "ssim", "nrmse", "relative_error")


def _cases() -> list[Case]:
    """A 2D camera case and a (12, 40, 40) camera-window volume, both with priors."""
    rng = np.random.default_rng(0)
    cam = data.camera().astype(np.float64) / 255.0
    img = cam[200:264, 180:244]
    vol = np.stack([cam[150 + 2 * k : 190 + 2 * k, 200:240] for k in range(12)])
    return [
        Case(img, img + 0.1 * rng.standard_normal(img.shape), prior=cam[202:266, 180:244], name="slice 1"),
        Case(vol, vol + 0.05 * rng.standard_normal(vol.shape), prior=dp.neighbour_slice_prior(vol), name="vol"),
    ]


@pytest.fixture(scope="module")
def report() -> Report:
    methods = [
        Method.tv(0.08),
        Method.spade(0.1, 0.5),
        Method("scaled", lambda noisy, prior=None: 0.9 * noisy),
    ]
    return assess(methods, _cases(), metrics=METRICS, progress=False)


def test_report_rows_equal_the_metrics_module(report):
    assert report.methods == ["noisy", "tv", "spade", "scaled"]
    assert len(report.rows) == 8
    for case in report.cases:
        for method in ("tv", "spade", "scaled"):
            out = report.outputs[case.name][method]
            assert report.value(case.name, method, "psnr") == pytest.approx(M.psnr(case.clean, out, 1.0), abs=1e-12)
            assert report.value(case.name, method, "ssim") == pytest.approx(M.ssim(case.clean, out, 1.0), abs=1e-12)
            assert report.value(case.name, method, "relative_error") == pytest.approx(
                M.relative_error(case.clean, out), abs=1e-12)
            assert report.value(case.name, method, "time_s") > 0
            assert report.value(case.name, method, "peak_mb") >= 0
        assert report.value(case.name, "noisy", "psnr") == pytest.approx(M.psnr(case.clean, case.noisy, 1.0))
    tv_out = tv_denoise(report.cases[0].noisy, 0.08)
    np.testing.assert_allclose(report.outputs["slice 1"]["tv"], tv_out)
    np.testing.assert_allclose(report.outputs["vol"]["scaled"], 0.9 * report.cases[1].noisy)
    # the 3D case is scored with a true 3D SSIM, the 2D case with a 2D SSIM
    vol = report.cases[1]
    assert report.value("vol", "tv", "ssim") == pytest.approx(M.ssim_3d(vol.clean, report.outputs["vol"]["tv"], 1.0))
    assert report.best("slice 1", "psnr") in ("tv", "spade")


def test_markdown_csv_and_json_hold_the_rows(report, tmp_path):
    text = report.to_markdown()
    assert "| case | method | PSNR (dB) | SSIM | NRMSE | rel. error (%) | time (s) | peak mem (MiB) |" in text
    psnr_tv = report.value("vol", "tv", "psnr")
    assert "| vol | tv | " in text and f"{psnr_tv:.2f}" in text
    assert "Mean over cases" in text and "tracemalloc" in text
    best = report.best("vol", "psnr")
    assert f"| vol | {best} | **{report.value('vol', best, 'psnr'):.2f}**" in text

    with open(report.to_csv(tmp_path / "r.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["case"], r["method"]) for r in rows] == [(r["case"], r["method"]) for r in report.rows]
    for got, want in zip(rows, report.rows):
        for column in (*METRICS, "time_s", "peak_mb"):
            assert float(got[column]) == pytest.approx(want[column], rel=1e-12)

    blob = json.loads(report.to_json(tmp_path / "r.json").read_text())
    assert blob["metrics"] == list(METRICS) and blob["data_range"] == 1.0
    assert blob["rows"] == report.rows
    assert [c["shape"] for c in blob["cases"]] == [[64, 64], [12, 40, 40]]
    assert {r["method"] for r in blob["summary"]} == {"noisy", "tv", "spade", "scaled"}


def test_plot_writes_one_png_per_case_and_a_chart(report, tmp_path):
    paths = report.plot(tmp_path / "figs")
    assert [p.name for p in paths] == ["slice_1.png", "vol.png", "metrics.png"]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(p.name for p in paths)
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 200


def test_mask_restricts_every_metric():
    case = _cases()[0]
    mask = case.clean > 0.3
    rep = assess([Method.tv(0.08)], [case], metrics=METRICS, mask=lambda clean: clean > 0.3, progress=False)
    out = rep.outputs[case.name]["tv"]
    assert rep.value(case.name, "tv", "psnr") == pytest.approx(M.psnr(case.clean, out, 1.0, mask=mask))
    assert rep.value(case.name, "tv", "ssim") == pytest.approx(M.ssim_2d(case.clean, out, 1.0, mask=mask))
    assert rep.value(case.name, "tv", "relative_error") == pytest.approx(M.relative_error(case.clean, out, mask=mask))
    assert rep.value(case.name, "tv", "psnr") != pytest.approx(M.psnr(case.clean, out, 1.0))


def test_a_method_needing_a_prior_fails_before_any_work():
    calls = []
    counting = Method("counting", lambda noisy, prior=None: calls.append(1) or noisy)
    case = _cases()[0]
    no_prior = Case(case.clean, case.noisy, name="bare")
    with pytest.raises(MissingPriorError, match="'spade' on case 'bare'"):
        assess([counting, Method.spade(0.1, 0.5)], [case, no_prior], progress=False)
    assert calls == []
    with pytest.raises(MissingPriorError, match="needs a prior"):
        Method.spade(0.1, 0.5)(case.noisy)


def test_bad_requests_are_refused():
    case = _cases()[0]
    with pytest.raises(AssessError, match="unknown metric"):
        assess([Method.tv(0.1)], [case], metrics=("psnr", "sharpness"), progress=False)
    with pytest.raises(AssessError, match="unique"):
        assess([Method.tv(0.1), Method.tv(0.2)], [case], progress=False)
    with pytest.raises(dp.ShapeMismatchError, match="prior has shape"):
        Case(case.clean, case.noisy, prior=case.clean[:-1], name="bad")
    with pytest.raises(dp.ShapeMismatchError, match="returned shape"):
        assess([Method("crop", lambda noisy, prior=None: noisy[1:])], [case], progress=False)


def test_case_from_files_reads_and_normalises(tmp_path):
    case = _cases()[0]
    for name, arr in (("clean", case.clean), ("noisy", case.noisy), ("prior", case.prior)):
        np.save(tmp_path / f"{name}.npy", (arr * 1000).astype(np.float32))
    loaded = Case.from_files(tmp_path / "clean.npy", tmp_path / "noisy.npy", tmp_path / "prior.npy")
    assert loaded.name == tmp_path.name and loaded.clean.shape == (64, 64)  # "noisy" names a role only
    np.testing.assert_allclose(loaded.noisy, case.noisy * 1000, rtol=1e-6)
    scaled = Case.from_files(tmp_path / "clean.npy", tmp_path / "noisy.npy", normalizer=dp.Normalizer.minmax(),
                             name="n")
    fitted = dp.Normalizer.minmax().fit((case.clean * 1000).astype(np.float32))  # fitted on the clean file
    assert scaled.prior is None and scaled.units == fitted
    np.testing.assert_allclose(scaled.clean, fitted(case.clean * 1000), atol=1e-5)
    np.testing.assert_allclose(scaled.noisy, fitted(case.noisy * 1000), atol=1e-5)
    assert abs(scaled.clean.min()) < 0.02 and abs(scaled.clean.max() - 1) < 0.02


def test_keras_models_fit_behind_method():
    keras = pytest.importorskip("keras")
    from model_helpers import random_head
    from resprunet import models
    from resprunet.inference import predict_volume

    keras.utils.set_random_seed(0)
    # random heads: untrained, these models would return their input or prior, and a slice
    # order or slicing bug would go unseen
    unet = random_head(models.build("unet", ndim=2, filters=4, depth=1), scale=0.3)
    respr = random_head(models.build("respr_unet", ndim=2, filters=4, depth=1), scale=0.3)
    case = _cases()[1]
    plain, with_prior = Method.from_model(unet, name="unet2d"), Method.from_model(respr)
    assert not plain.needs_prior and with_prior.needs_prior and with_prior.name == respr.name
    noisy = case.noisy.astype(np.float32)
    slice_wise = np.stack([predict_volume(unet, s, progress=False) for s in noisy])
    np.testing.assert_allclose(plain(case.noisy), slice_wise, atol=1e-5)
    assert np.abs(slice_wise - noisy).mean() > 0.02  # not the identity
    assert np.abs(slice_wise[::-1] - slice_wise).mean() > 0.02  # reversed slices would differ
    rep = assess([plain, with_prior], [case], metrics=("psnr",), progress=False)
    np.testing.assert_allclose(rep.outputs["vol"][respr.name],
                               predict_volume(respr, noisy, prior=case.prior.astype(np.float32), progress=False),
                               atol=1e-5)


def test_tuned_baselines_use_the_validation_case_only():
    from resprunet.assess import tuned_baselines
    from resprunet.variational import tune_on_validation

    validation, test = _cases()[0], _cases()[1]
    methods, params = tuned_baselines(validation, 0.1, ["tv", "spade", "wavelet"])
    assert [m.name for m in methods] == ["tv", "spade", "wavelet"] and methods[1].needs_prior
    expected = tune_on_validation(tv_denoise, validation.clean, validation.noisy,
                                  {"weight": [0.04, 0.06, 0.08, 0.1, 0.13]})
    assert params["tv"] == pytest.approx(expected) and params["wavelet"] == {"sigma": 0.1}
    np.testing.assert_allclose(methods[0](test.noisy), tv_denoise(test.noisy, params["tv"]["weight"]))
    estimated, est_params = tuned_baselines(validation, None, ["tv", "wavelet"])  # sigma from the data
    assert [m.name for m in estimated] == ["tv", "wavelet"]
    assert est_params["wavelet"] == {"sigma": None} and 0.02 <= est_params["tv"]["weight"] <= 0.2
    with pytest.raises(ValueError, match="needs a prior"):
        tuned_baselines(Case(validation.clean, validation.noisy), 0.1, ["spade"])
    with pytest.raises(ValueError, match="bm4d"):
        tuned_baselines(validation, 0.1, ["bm4d"])


def test_concat_and_save_write_every_file(tmp_path):
    cases = _cases()
    parts = [assess([Method.tv(w)], [c], metrics=("psnr",), progress=False) for w, c in zip((0.05, 0.08), cases)]
    merged = Report.concat(parts)
    assert [c.name for c in merged.cases] == ["slice 1", "vol"] and len(merged.rows) == 4
    paths = merged.save(tmp_path / "out", preamble="# title\n\n", summary=False)
    text = paths["markdown"].read_text()
    assert text.startswith("# title\n\n| case | method | PSNR (dB)") and "Mean over cases" not in text
    assert len(list(csv.DictReader(paths["csv"].open()))) == 4
    assert json.loads(paths["json"].read_text())["rows"] == merged.rows
    assert sorted(p.name for p in paths["figures"].iterdir()) == ["metrics.png", "slice_1.png", "vol.png"]
    with pytest.raises(ValueError, match="repeat"):
        Report.concat([parts[0], parts[0]])


# ---- names, defaults, progress --------------------------------------------------------------
def test_a_case_is_named_after_its_noisy_file_or_its_folder(tmp_path):
    image = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    (tmp_path / "liver").mkdir()
    for path in (tmp_path / "scan_clean.npy", tmp_path / "scan_noisy.npy", tmp_path / "liver" / "clean.npy",
                 tmp_path / "liver" / "noisy.npy"):
        np.save(path, image)
    named = Case.from_files(tmp_path / "scan_clean.npy", tmp_path / "scan_noisy.npy")
    assert named.name == "scan_noisy"
    assert Case.from_files(tmp_path / "liver" / "clean.npy", tmp_path / "liver" / "noisy.npy").name == "liver"
    assert Case.from_files(tmp_path / "liver" / "clean.npy", tmp_path / "liver" / "noisy.npy", name="x").name == "x"


def test_default_metrics_do_not_repeat_the_relative_error():
    case = _cases()[0]
    rep = assess([Method.tv(0.08)], [case], progress=False)
    assert rep.metrics == ("psnr", "ssim", "relative_error")
    # with its default normalisation NRMSE is the relative error / 100: one of them is enough
    out = rep.outputs[case.name]["tv"]
    assert M.nrmse(case.clean, out) * 100 == pytest.approx(rep.value(case.name, "tv", "relative_error"))


def test_progress_names_each_method_as_it_runs(capsys):
    case = _cases()[0]
    assess([Method.tv(0.08), Method("scaled", lambda noisy, prior=None: 0.9 * noisy)], [case], progress=True)
    err = capsys.readouterr().err
    assert "assess tv on slice 1" in err and "assess scaled on slice 1" in err and "2/2" in err


# ---- maps, views and figures ----------------------------------------------------------------
def test_error_map_is_the_relative_error_voxel_by_voxel():
    case = _cases()[1]
    out = tv_denoise(case.noisy, 0.05)
    emap = M.error_map(case.clean, out)
    assert emap.shape == case.clean.shape and emap.min() >= 0
    assert np.sqrt(np.mean(emap**2)) == pytest.approx(M.relative_error(case.clean, out), rel=1e-9)
    assert M.error_map(case.clean, case.clean).max() == 0
    with pytest.raises(ValueError, match="zero on the region"):
        M.error_map(np.zeros((4, 4)), np.ones((4, 4)))


def test_edge_line_crosses_the_edge_from_dark_to_bright():
    from resprunet.assess.views import edge_line

    image = np.zeros((40, 60))
    image[:, 37:] = 1.0  # one vertical edge between columns 36 and 37
    line = edge_line(image, length=16)
    (r0, c0), (r1, c1) = line.start, line.end
    assert abs(r1 - r0) < 1e-6 and c1 - c0 == pytest.approx(15.0)  # horizontal, left to right
    assert 34 <= (c0 + c1) / 2 <= 39 and 8 <= r0 <= 32  # centred on the edge, inside the image
    profile = line.profile(image)
    assert profile[0] == 0 and profile[-1] == 1 and np.all(np.diff(profile) >= 0)
    assert line.distances()[0] == pytest.approx(-7.5)


def test_orthogonal_slices_and_display_range():
    from resprunet.assess.views import display_range, orthogonal_slices

    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    xy, xz, yz = orthogonal_slices(vol)
    np.testing.assert_array_equal(xy, vol[2])
    np.testing.assert_array_equal(xz, vol[:, 2, :])
    np.testing.assert_array_equal(yz, vol[:, :, 3])
    assert [v.shape for v in orthogonal_slices(vol, (0, 1, 2))] == [(5, 6), (4, 6), (4, 5)]
    spiky = np.zeros(1000)
    spiky[:500] = np.linspace(0, 1, 500)
    spiky[0] = 1e6  # one hot voxel does not set the grey scale
    low, high = display_range(spiky)
    assert low == 0.0 and high < 2
    assert display_range(np.full(9, 3.0)) == (3.0, 4.0)


def test_case_figure_shows_images_ssim_and_error_maps_and_profiles(report):
    from resprunet.assess.figures import case_figure
    from resprunet.assess.views import edge_line, orthogonal_slices

    vol = report.cases[1]
    outputs = report.outputs["vol"]
    fig = case_figure(vol, outputs, report._titles("vol"), 1.0)
    panels = ["noisy", "prior", "tv", "spade", "scaled", "clean"]
    image_axes = [ax for ax in fig.axes if ax.images]
    # 3 views x 6 panels, SSIM and error maps for 5 of them (not the clean one)
    assert len(image_axes) == 3 * 6 + 2 * 5
    profile_ax = next(ax for ax in fig.axes if ax.get_xlabel().startswith("distance"))
    lines = {line.get_label(): line.get_ydata() for line in profile_ax.get_lines()}
    assert list(lines) == panels
    line = edge_line(orthogonal_slices(vol.clean)[0])
    np.testing.assert_allclose(lines["tv"], line.profile(outputs["tv"][vol.clean.shape[0] // 2]))
    assert np.ptp(lines["clean"]) > 0.2  # the line does cross an edge
    maps = [ax.images[0].get_array() for ax in fig.axes if ax.images and ax.images[0].get_cmap().name == "magma"]
    expected = M.error_map(vol.clean, outputs["tv"])[vol.clean.shape[0] // 2]
    np.testing.assert_allclose(maps[2], expected)  # columns: noisy, prior, tv, ...
    ssim_maps = [ax.images[0].get_array() for ax in fig.axes
                 if ax.images and ax.images[0].get_cmap().name == "viridis"]
    np.testing.assert_allclose(ssim_maps[2], M.ssim_map(vol.clean, outputs["tv"], 1.0)[vol.clean.shape[0] // 2])


def test_metrics_chart_axes_start_at_zero(report):
    from resprunet.assess.figures import metrics_chart

    fig = metrics_chart(report)
    titled = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert {"PSNR (dB)", "SSIM", "rel. error (%)", "time (s)"} <= set(titled)
    for title in ("PSNR (dB)", "SSIM", "rel. error (%)"):
        low, high = titled[title].get_ylim()
        assert low == 0.0 and high > 0
    assert titled["PSNR (dB)"].get_ylim()[1] >= max(r["psnr"] for r in report.rows)


def test_volume_figure_shows_three_planes_to_scale_and_the_histogram(tmp_path):
    from resprunet.assess.figures import volume_figure
    from resprunet.assess.views import display_range

    vol = dp.sample("t1_head")
    fig = volume_figure(vol.array, vol.spacing, "t1_head", path=tmp_path / "look.png")
    planes = [ax for ax in fig.axes if ax.images]
    assert [ax.images[0].get_array().shape for ax in planes] == [(41, 33), (25, 33), (25, 41)]
    low, high = display_range(vol.array)
    assert planes[0].images[0].get_clim() == (low, high)
    hist = fig.axes[-1]
    assert sorted(line.get_xdata()[0] for line in hist.get_lines()) == [low, high]
    assert "voxel size" in fig.get_suptitle() and "x".join(f"{s:g}" for s in vol.spacing) in fig.get_suptitle()
    with Image.open(tmp_path / "look.png") as im:
        assert im.size[0] > 800 and np.asarray(im.convert("L")).std() > 10
