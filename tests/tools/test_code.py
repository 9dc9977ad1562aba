"""The `code` tool: observations, image provenance, helpers, the CLI, and a run through the agent."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from PIL import Image as PILImage

from r1v4_nb.images import Image, Provenance
from r1v4_nb.records import ToolStep
from r1v4_nb.tools import code as code_module
from r1v4_nb.tools.base import ToolContext, ToolError
from r1v4_nb.tools.code import CodeTool

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox's containment is Linux-only")


def _photo(path: Path) -> Path:
    im = PILImage.new("RGB", (400, 300), (255, 255, 255))
    for x in range(100, 200):
        for y in range(50, 150):
            im.putpixel((x, y), (200, 20, 20))
    im.save(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("code-tool")
    src = Image.from_file(_photo(folder / "photo.png"), Provenance("input", name="photo.png"))
    ctx = ToolContext("t1", folder / "work", step=1)
    ctx.workdir.mkdir()
    ctx.register_image(src, "image_1", "photo.png", str(src.path))
    tool = CodeTool(timeout_s=3, memory_mb=1024, output_chars=500)
    tool.start(ctx)
    yield tool, ctx, src
    tool.close()


def run(tool: CodeTool, ctx: ToolContext, code: str, step: int = 1):
    ctx.step = step
    return tool.run({"code": code}, ctx)


def test_spec_and_settings() -> None:
    tool = CodeTool()
    spec = tool.spec()
    assert spec["name"] == "code" and spec["parameters"]["required"] == ["code"]
    for name in ("image_1", "images", "image_paths", "show(", "helpers"):
        assert name in tool.description
    assert tool.settings()["limits"]["time_s"] == 30.0 and tool.settings()["limits"]["memory_mb"] == 4096


def test_inputs_are_preloaded_as_read_only_copies(setup) -> None:
    tool, ctx, src = setup
    obs = run(tool, ctx, "print(image_1.size, len(images), image_paths)")
    assert obs.error is None
    copy = ctx.workdir / "inputs" / "photo.png"
    assert obs.text == f"(400, 300) 1 ['{copy}']"
    assert copy.read_bytes() == src.path.read_bytes()


def test_printed_crop_comes_back_with_provenance(setup) -> None:
    tool, ctx, src = setup
    obs = run(tool, ctx, "c = image_1.crop((100, 50, 200, 150))\nc.save('red.png')\nprint('red.png')", step=3)
    assert obs.error is None and len(obs.images) == 1
    im = obs.images[0]
    assert (im.width, im.height) == (100, 100)
    assert im.provenance == Provenance("code", step=3, source=src.sha256, box=[100, 50, 200, 150], name="red.png")
    assert "[image 1: red.png (100x100)]" in obs.text
    assert ctx.resolve_image("red.png") is im and ctx.images[str(ctx.workdir / "red.png")] is im


def test_helpers_compose_provenance(setup) -> None:
    tool, ctx, src = setup
    code = ("from helpers import crop, zoom, contrast, sharpen\n"
            "half = crop(image_1, (0.5, 0.0, 1.0, 1.0))\n"  # normalised box -> pixels 200..400
            "big = zoom(half, 2)\n"
            "inner = sharpen(contrast(crop(big, (0, 100, 200, 300))))\n"  # in big's pixels: half size in source
            "print(half.size, big.size, inner.size)\n"
            "show(inner)")
    obs = run(tool, ctx, code)
    assert obs.error is None, obs.text
    assert obs.text.startswith("(200, 300) (400, 600) (200, 200)")
    assert obs.images[0].provenance.box == [200, 50, 300, 150]
    assert obs.images[0].provenance.source == src.sha256


def test_helper_functions(setup) -> None:
    tool, ctx, _ = setup
    code = ("import helpers as h\n"
            "s = h.stats(image_1, (100, 50, 200, 150))\n"
            "print(s['size'], s['mean']['R'], s['mean']['G'])\n"
            "print(h.rotate(image_1, 90).size, h.flip(image_1, 'vertical').getpixel((150, 199)))\n"
            "print(h.grayscale(image_1).mode, h.threshold(image_1).getpixel((150, 100)), "
            "h.threshold(image_1, 250).getpixel((0, 0)))\n"
            "print(h.denoise(h.crop(image_1, (90, 40, 210, 160))).size, h.brightness(image_1, 0.5).getpixel((0, 0)))\n"
            "boxed = h.draw_boxes(image_1, [(100, 50, 200, 150)], ['red'], color='blue')\n"
            "print(boxed.getpixel((100, 100)), h.autocontrast(image_1).size)")
    obs = run(tool, ctx, code)
    assert obs.error is None, obs.text
    lines = obs.text.splitlines()
    assert lines[0] == "[100, 100] 200.0 20.0"
    assert lines[1] == "(300, 400) (200, 20, 20)"
    assert lines[2] == "L 0 255"
    assert lines[3] == "(120, 120) (127, 127, 127)"
    assert lines[4] == "(0, 0, 255) (400, 300)"


def test_last_expression_value_and_image(setup) -> None:
    tool, ctx, _ = setup
    obs = run(tool, ctx, "k = 6\nk * 7")
    assert obs.text == "42"
    obs = run(tool, ctx, "image_1.crop((0, 0, 10, 20))")
    assert len(obs.images) == 1 and obs.images[0].provenance.box == [0, 0, 10, 20]
    obs = run(tool, ctx, "z = image_1.crop((0, 0, 10, 20))\nshow(z)\nz")  # shown, then the last value
    assert len(obs.images) == 1 and obs.text.count("[image ") == 1
    obs = run(tool, ctx, "show(image_1.crop((0, 0, 4, 4)))\nimage_1.crop((0, 0, 6, 6))")  # two images
    assert [im.width for im in obs.images] == [4, 6]


def test_errors_are_observations(setup) -> None:
    tool, ctx, _ = setup
    obs = run(tool, ctx, "def f():\n    return undefined_name\nf()")
    assert obs.error == "NameError: name 'undefined_name' is not defined"
    assert obs.text.startswith("Traceback (most recent call last):") and "line 2, in f" in obs.text
    obs = run(tool, ctx, "print('x' * 1234)")
    assert obs.text.endswith("... 735 more characters cut\n[limit: output limit reached; the rest of the output was cut]")
    assert obs.limits_hit == ["output"]
    with pytest.raises(ToolError, match="missing argument 'code'"):
        tool.run({"cod": "1"}, ctx)


def test_timeout_is_reported_and_state_is_gone(setup) -> None:
    tool, ctx, _ = setup
    run(tool, ctx, "marker = 1")
    obs = run(tool, ctx, "import time\ntime.sleep(60)")
    assert obs.limits_hit == ["time"] and obs.data["restarted"]
    assert "longer than 3 s" in obs.text and "restarted" in obs.text and "gone" in obs.text
    obs = run(tool, ctx, "marker")
    assert obs.error.startswith("NameError")
    assert run(tool, ctx, "image_1.size").text == "(400, 300)"


def test_separate_trajectories_have_separate_workers(setup, tmp_path: Path) -> None:
    tool, ctx, src = setup
    other = ToolContext("t2", tmp_path, step=1)
    other.register_image(src, "image_1")
    run(tool, ctx, "shared = 'first'")
    assert tool.run({"code": "'shared' in dir()"}, other).text == "False"
    tool.finish(other)
    assert "t2" not in tool.workers and "t1" in tool.workers


def test_no_network_namespace_warns_once_or_refuses(monkeypatch: pytest.MonkeyPatch, setup) -> None:
    _, ctx, _ = setup
    monkeypatch.setattr(code_module, "_warned", False)
    no_net = {"net": False, "errors": ["unshare(0x40000000): Operation not permitted"]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "CAN reach the network" in CodeTool._check_network(no_net)
        CodeTool._check_network(no_net)
    assert len(caught) == 1 and "Operation not permitted" in str(caught[0].message)
    assert CodeTool._check_network({"net": True}) is None
    strict = CodeTool(require_network_isolation=True)
    monkeypatch.setattr(code_module.Worker, "wait_ready", lambda self: no_net)
    monkeypatch.setattr(code_module.Worker, "start", lambda self: None)
    obs = strict.run({"code": "print(1)"}, ctx)
    assert obs.error == "network isolation unavailable" and obs.limits_hit == ["network"]


def test_cancel_reaches_model_code(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    tool, ctx, _ = setup
    monkeypatch.setattr(tool.limits, "time_s", 120)  # the cancel, however late on a loaded machine, comes first
    ctx.cancel = threading.Event()
    threading.Timer(0.3, ctx.cancel.set).start()
    obs = run(tool, ctx, "import time\ntime.sleep(100)")
    assert obs.error == "KeyboardInterrupt" and not obs.data["restarted"]
    ctx.cancel = threading.Event()


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "r1v4_nb.cli", "tool", "code", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_cli(tmp_path: Path) -> None:
    img = _photo(tmp_path / "p.png")
    p = _cli("--image", str(img), "--timeout", "5", "--workdir", str(tmp_path / "w"), "-",
             stdin="c = image_1.crop((0, 0, 40, 30)).resize((80, 60))\nc.save('z.png')\nprint('z.png')\n")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["text"] == "z.png\n[image 1: z.png (80x60)]" and out["images"] == [str(tmp_path / "w" / "z.png")]
    assert out["error"] is None and out["limits_hit"] == [] and out["elapsed_s"] >= 0
    script = tmp_path / "loop.py"
    script.write_text("while True:\n    pass\n")
    p = _cli("--image", str(img), "--timeout", "1", str(script))
    out = json.loads(p.stdout)
    assert p.returncode == 0 and out["limits_hit"] == ["time"] and "longer than 1 s" in out["error"]
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    p = _cli("--image", str(bad), stdin="print(1)")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "--image" in p.stderr
    p = _cli("--image", str(tmp_path / "missing.png"), stdin="print(1)")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "missing.png" in p.stderr and "None" not in p.stderr
    latin = tmp_path / "latin1.py"
    latin.write_bytes("print('caf\u00e9')".encode("latin-1"))
    for args, phrase in [(("--timeout", "nan", "-"), "--timeout"), (("--timeout", "inf", "-"), "--timeout"),
                         (("--workdir", str(latin), "-"), "is a file"), ((str(latin),), "not UTF-8")]:
        p = _cli(*args, stdin="print(1)")
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and phrase in p.stderr, (args, p.stderr)


def test_inside_an_agent_run(tmp_path: Path) -> None:
    from r1v4_nb.agent import Agent
    from r1v4_nb.models.replay import ScriptedModel

    img = _photo(tmp_path / "p.png")
    call = {"name": "code", "arguments": {"code": "c = image_1.crop((100, 50, 200, 150))\nc.save('red.png')\n"
                                                   "print('red.png', c.getpixel((5, 5)))"}}
    model = ScriptedModel([
        f"<think>Look at the red square.</think><tool_call>{json.dumps(call)}</tool_call>",
        "<think>It is red.</think><answer>red</answer>",
    ])
    tool = CodeTool(timeout_s=10)
    result = Agent(model, tools=[tool], dialect="r1v4", mode="general", runs_dir=tmp_path / "runs").ask(
        "What colour is the square?", images=[img])
    assert result.answer == "red"
    steps = [s for s in result.trajectory.steps if isinstance(s, ToolStep)]
    assert len(steps) == 1 and steps[0].observation.error is None
    obs = steps[0].observation
    assert "red.png (200, 20, 20)" in obs.text
    assert obs.images[0].provenance.kind == "code" and obs.images[0].provenance.box == [100, 50, 200, 150]
    assert obs.images[0].path.is_file()
    assert tool.workers == {}  # finished with the run


def test_require_isolation_refuses_where_the_boundary_is_missing(setup, tmp_path: Path) -> None:
    _, _, src = setup
    ctx = ToolContext("iso", tmp_path / "iso", step=1)
    ctx.workdir.mkdir()
    ctx.register_image(src, "image_1")
    strict = CodeTool(timeout_s=60, require_isolation=True)
    try:
        obs = strict.run({"code": "print(1)"}, ctx)
        assert obs.error is None and obs.text == "1"  # this machine gives the whole boundary
    finally:
        strict.close()
    from r1v4_nb.sandbox.contain import landlock_abi

    laptop = CodeTool(timeout_s=60, require_isolation=True, view="landlock")  # as without a mount namespace
    try:
        obs = laptop.run({"code": "print(1)"}, ctx)
        assert obs.error == "isolation unavailable" and obs.limits_hit == ["isolation"]
        assert ("unix sockets" if landlock_abi() else "every host file") in obs.text
    finally:
        laptop.close()


def test_a_forged_image_outside_scratch_is_not_returned(setup, tmp_path: Path) -> None:
    tool, ctx, _ = setup
    outside = tmp_path / "host.png"
    PILImage.new("RGB", (8, 8)).save(outside)
    forged = ("import gc\nfrom r1v4_nb.sandbox import protocol\n"
              "s = next(o for o in gc.get_objects() if type(o).__name__ == '_Session')\n"
              "protocol.send(s.wfd, {'type': 'result', 'id': s.call_id, 'stdout': '', 'stderr': '', "
              f"'images': [{{'path': {str(outside)!r}, 'name': 'x.png'}}, {{'path': '/proc/self/environ', "
              "'name': 'env.png'}]})\nimport time\ntime.sleep(100)")
    obs = run(tool, ctx, forged)
    assert obs.images == [] and obs.text.count("not returned") == 2
    tool.workers[ctx.trajectory_id].restart()  # the real call is still sleeping
    assert run(tool, ctx, "image_1.size").text == "(400, 300)"


def test_images_saved_with_the_fast_png_default_stay_lossless(setup) -> None:
    import numpy as np

    tool, ctx, _src = setup
    code = ("import numpy as np\nfrom PIL import Image\n"
            "a = np.random.default_rng(5).integers(0, 256, (90, 120, 3), dtype=np.uint8)\na[:, :40] = 7\n"
            "Image.fromarray(a).save('noise.png'); show(Image.fromarray(a), 'shown.png')\nprint('noise.png')")
    obs = run(tool, ctx, code, step=40)
    assert obs.error is None and len(obs.images) == 2
    expected = np.random.default_rng(5).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    expected[:, :40] = 7
    for image in obs.images:
        with PILImage.open(image.path) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), expected)
