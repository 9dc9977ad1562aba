import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageDraw

from r1v4_nb.images import Image
from r1v4_nb.tools.backends.image_index import ImageIndex, _grey, hamming64, phash
from r1v4_nb.tools.base import ToolContext
from r1v4_nb.tools.cache import ToolCache
from r1v4_nb.tools.image_search import ImageSearchTool


@pytest.fixture(scope="module")
def index(small_world):
    return ImageIndex(small_world.image_index)


def entity_image(world, n):
    e = world.load_entities()[n]
    return PILImage.open(world.root / e["image"]).convert("RGB"), e["url"]


def unrelated() -> PILImage.Image:
    """A picture in a different style from the world's: soft circles over a noise field."""
    rng = np.random.default_rng(12345)
    im = PILImage.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).resize((320, 240))
    d = ImageDraw.Draw(im)
    for _ in range(30):
        x, y, r = rng.uniform(0, 320), rng.uniform(0, 240), rng.uniform(5, 40)
        d.ellipse([x - r, y - r, x + r, y + r], outline=tuple(int(v) for v in rng.integers(0, 256, 3)), width=3)
    return im


@pytest.mark.parametrize("n", [0, 12, 25])  # a place, a person, an object
def test_crop_of_a_quarter_resize_and_rotation_find_the_page(index, small_world, n):
    im, url = entity_image(small_world, n)
    w, h = im.size
    queries = {
        "crop": im.crop((w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2)),  # 1/4 of the area
        "resize": im.resize((w // 2, h // 2), PILImage.Resampling.LANCZOS),
        "rotate": im.rotate(10, resample=PILImage.Resampling.BICUBIC, fillcolor=(255, 255, 255)),
        "recolour": PILImage.fromarray(np.clip(np.asarray(im, np.float32) * 0.8 + [40, 20, 0], 0, 255)
                                       .astype(np.uint8)),
    }
    for name, q in queries.items():
        found = index.search(q, k=3)
        assert found and found[0]["url"] == url, (name, found)
        assert found[0]["similarity"] >= 0.5


def test_unrelated_image_finds_nothing_above_threshold(index, small_world):
    assert index.search(unrelated(), k=5) == []
    from r1v4_nb.world.draw import draw_object, draw_person

    for seed in (424242, 434343):  # the world's own style, but pictures that are not in it
        assert index.search(draw_object(seed), k=5) == [] and index.search(draw_person(seed), k=5) == []


def test_exhaustive_scan_agrees_with_the_hash_tables(index, small_world):
    im, url = entity_image(small_world, 7)
    crop = im.crop((0, 0, im.width // 2, im.height // 2))
    assert index.search(crop, k=1)[0]["url"] == index.search(crop, k=1, exhaustive=True)[0]["url"] == url


def test_phash_is_stable_under_resize_and_distinct_across_pictures(small_world):
    a, _ = entity_image(small_world, 3)
    b, _ = entity_image(small_world, 4)
    ha, hb = phash(_grey(a)), phash(_grey(a.resize((160, 120))))
    assert hamming64(ha, np.array([hb], dtype=np.uint64))[0] <= 4
    assert hamming64(ha, np.array([phash(_grey(b))], dtype=np.uint64))[0] > 12


def test_tool_returns_matches_with_thumbnails_and_resolves_crops(small_world, tmp_path):
    im, url = entity_image(small_world, 12)
    ctx = ToolContext("t", tmp_path, step=3)
    crop_file = tmp_path / "crop_1.png"
    im.crop((40, 30, 200, 150)).save(crop_file)  # a crop the code tool saved into the workdir
    ctx.register_image(Image.from_file(small_world.root / small_world.load_entities()[12]["image"]), "input.png")
    tool = ImageSearchTool(index=small_world.image_index, cache=ToolCache(tmp_path / "cache.sqlite"))
    obs = tool.run({"image_paths": ["crop_1.png", "input.png", "missing.png"]}, ctx)
    first = obs.data["matches"][0]
    assert first["url"] == url and first["image"] == "crop_1.png" and first["thumbnail"] == 0
    assert obs.images[0].provenance.kind == "search" and obs.images[0].provenance.name == url
    assert obs.images[0].width <= 128 and "similarity" in obs.text
    assert obs.data["errors"][0]["image"] == "missing.png" and "no image named 'missing.png'" in obs.text
    assert obs.error is None
    nothing = tool.run({"image_paths": ["u.png"]}, _ctx_with(tmp_path, unrelated()))
    assert "No matching pages found." in nothing.text and nothing.data["matches"] == []
    off = ImageSearchTool(index=small_world.image_index, cache=ToolCache(None, "off"))
    assert off.run({"image_paths": ["input.png"]}, ctx).images[0].path.parent == tmp_path / "thumbnails"


def _ctx_with(tmp_path, pil):
    path = tmp_path / "u.png"
    pil.save(path)
    ctx = ToolContext("t", tmp_path)
    ctx.register_image(Image.from_file(path), "u.png")
    return ctx


def test_lens_needs_a_public_url(small_world, tmp_path, monkeypatch):
    import json

    from tests.support.search import LoopbackServer, reply

    monkeypatch.setenv("SERPER_API_KEY", "k")
    lens = {"organic": [{"title": "A tower", "link": "https://t.example/tower", "source": "T",
                         "thumbnailUrl": "https://t.example/t.jpg"}]}
    with LoopbackServer({"/lens": reply(200, json.dumps(lens), "application/json")}) as server:
        ctx = _ctx_with(tmp_path, unrelated())
        tool = ImageSearchTool("serper", base_url=server.base, cache=ToolCache(None, "off"))
        assert "needs the picture at a public URL" in tool.run({"image_paths": ["u.png"]}, ctx).error
        tool = ImageSearchTool("serper", base_url=server.base, cache=ToolCache(None, "off"),
                               publish="https://img.example/{sha256}{ext}")
        obs = tool.run({"image_paths": ["u.png", "https://x.example/photo.jpg"]}, ctx)
        assert obs.error is None and obs.data["matches"][0]["thumbnail_url"] == "https://t.example/t.jpg"
        assert obs.data["matches"][0]["thumbnail"] is None and len(obs.data["matches"]) == 2


def test_k_below_one_is_a_usage_error(tmp_path):
    from r1v4_nb.errors import UsageError

    with pytest.raises(UsageError, match="k must be at least 1"):
        ImageSearchTool(k=0, cache=ToolCache(tmp_path / "c.sqlite"))


def test_images_past_the_limit_are_named_as_left_out(small_world, tmp_path):
    ctx = _ctx_with(tmp_path, unrelated())
    tool = ImageSearchTool(index=small_world.image_index, cache=ToolCache(None, "off"), max_images=1)
    obs = tool.run({"image_paths": ["u.png", "other.png", "third.png"]}, ctx)
    assert obs.text.count("Image ") == 1 and obs.text.endswith("2 more were left out (give at most 1 per call).")



def test_a_failed_build_leaves_the_old_index_and_no_half_built_file(tmp_path):
    from r1v4_nb.errors import UsageError

    good = tmp_path / "a.png"
    PILImage.new("RGB", (64, 48), (200, 40, 40)).save(good)
    (tmp_path / "bad.png").write_text("not an image")
    path = tmp_path / "index.sqlite"
    ImageIndex.build([(good, "https://x.example/a", "A")], path)
    before = path.read_bytes()
    with pytest.raises(UsageError, match="cannot index"):
        ImageIndex.build([(good, "https://x.example/a", "A"), (tmp_path / "bad.png", "u", "t")], path)
    assert path.read_bytes() == before
    assert not (tmp_path / "index.sqlite.building").exists()
