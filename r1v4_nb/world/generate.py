"""The offline demo world: fictional places, objects and people, cross-linked, with pictures and questions.

Everything is made up here, by code, from one seed: names from syllables,
facts from small vocabularies, pictures from `draw`. Entities link to each
other (an object was made by a person, who was born in a place, where another
object is kept), so questions need several hops: image -> entity -> page ->
fact -> second page. Each question records the tool path that solves it.
"""

from __future__ import annotations

import html
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .draw import DRAW

HOST = "https://atlas.r1v4.test"
_SYL = ("ka ve lo mir dan tho sel ru bra en il os fen gar hal ix jo kel lum nor pa qui ren sta tur "
        "ul var wen yor zel bel cor dru fa gil hen is jar ko lin mo ne or pe ri sa te va").split()
PLACE_KINDS = ["town", "island", "river port", "mountain village", "lake town", "harbour city", "valley hamlet"]
OBJECT_KINDS = ["astrolabe", "lantern", "tapestry", "bell", "statue", "clock", "compass", "chalice",
                "music box", "globe", "telescope", "mosaic"]
MATERIALS = ["brass", "bronze", "silver", "oak", "glass", "jade", "copper", "porcelain", "walnut", "iron",
             "marble", "linen"]
OCCUPATIONS = ["cartographer", "glassblower", "clockmaker", "weaver", "bellfounder", "sculptor", "astronomer",
               "instrument maker", "silversmith", "mosaicist", "botanist", "shipwright"]
REGIONS = ["the Amber Coast", "the Northern Reach", "the Lowmarch", "the Saltfens", "the High Plateau",
           "the Cinder Isles"]


@dataclass
class Entity:
    """One page of the world."""

    kind: str  # place | object | person
    slug: str
    name: str
    facts: dict[str, object] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # fact name -> slug of another entity

    @property
    def url(self) -> str:
        return f"{HOST}/wiki/{self.slug}"

    @property
    def image_url(self) -> str:
        return f"{HOST}/media/{self.slug}.png"


def _names(rng: random.Random, n: int, parts: tuple[int, int], taken: set[str]) -> list[str]:
    out = []
    while len(out) < n:
        name = "".join(rng.choice(_SYL) for _ in range(rng.randint(*parts))).capitalize()
        if name not in taken and len(name) > 3:
            taken.add(name)
            out.append(name)
    return out


def make_entities(seed: int, per_kind: int) -> list[Entity]:
    """The world's entities with their facts and links (no files)."""
    rng = random.Random(seed)
    taken: set[str] = set()
    places = [Entity("place", n.lower(), n) for n in _names(rng, per_kind, (2, 3), taken)]
    surnames = _names(rng, per_kind, (2, 3), taken)
    people = []
    for first, last in zip(_names(rng, per_kind, (2, 2), taken), surnames, strict=True):
        people.append(Entity("person", f"{first}_{last}".lower(), f"{first} {last}"))
    objects = []
    for n in _names(rng, per_kind, (2, 3), taken):
        kind = rng.choice(OBJECT_KINDS)
        objects.append(Entity("object", f"{n}_{kind.replace(' ', '_')}".lower(), f"The {n} {kind.title()}",
                              {"kind": kind}))
    for p in places:
        p.facts.update(kind=rng.choice(PLACE_KINDS), region=rng.choice(REGIONS), founded=rng.randint(880, 1790),
                       population=rng.randint(3, 900) * 100, elevation=rng.randint(2, 2400))
    for i, person in enumerate(people):
        person.facts.update(occupation=rng.choice(OCCUPATIONS), born=rng.randint(1500, 1880))
        person.links["born_in"] = rng.choice(places).slug
        if i:
            person.links["mentor"] = people[rng.randrange(i)].slug
    for o in objects:
        maker = rng.choice(people)
        o.facts.update(material=rng.choice(MATERIALS), made=int(maker.facts["born"]) + rng.randint(20, 60),
                       height_cm=rng.randint(8, 400))
        o.links["made_by"] = maker.slug
        o.links["kept_in"] = rng.choice(places).slug
    for p in places:
        kept = [o for o in objects if o.links["kept_in"] == p.slug]
        if kept:
            p.links["treasure"] = kept[0].slug
    return places + people + objects


def _a(e: Entity) -> str:
    return f'<a href="/wiki/{e.slug}">{html.escape(e.name)}</a>'


def _article(word: object) -> str:
    return "an" if str(word)[:1].lower() in "aeiou" else "a"


def page_html(e: Entity, by_slug: dict[str, Entity]) -> str:
    """The page of one entity, wrapped in the site's menus and footer (boilerplate for the extractor)."""
    f, ln = e.facts, {k: by_slug[v] for k, v in e.links.items()}
    if e.kind == "place":
        lead = (f"{e.name} is {_article(f['kind'])} {f['kind']} in {f['region']}, founded in {f['founded']}. It lies at an elevation "
                f"of {f['elevation']} metres and has about {f['population']:,} inhabitants.")
        extra = [f"Its best known treasure is {_a(ln['treasure'])}."] if "treasure" in ln else []
        born = [p for p in by_slug.values() if p.links.get("born_in") == e.slug]
        if born:
            extra.append("People born here include " + ", ".join(_a(p) for p in born[:4]) + ".")
        box = {"Type": f["kind"], "Region": f["region"], "Founded": f["founded"], "Population": f"{f['population']:,}"}
    elif e.kind == "person":
        lead = f"{e.name} (born {f['born']}) was {_article(f['occupation'])} {f['occupation']} from {_a(ln['born_in'])}."
        extra = [f"{e.name.split()[0]} learned the trade from {_a(ln['mentor'])}."] if "mentor" in ln else []
        works = [o for o in by_slug.values() if o.links.get("made_by") == e.slug]
        if works:
            extra.append("Known works: " + ", ".join(_a(o) for o in works[:4]) + ".")
        box = {"Occupation": f["occupation"], "Born": f"{f['born']}, {ln['born_in'].name}"}
    else:
        lead = (f"{e.name} is {_article(f['material'])} {f['material']} {f['kind']} made in {f['made']} by {_a(ln['made_by'])}. "
                f"It stands {f['height_cm']} cm tall.")
        extra = [f"Today it is kept in {_a(ln['kept_in'])}."]
        box = {"Kind": f["kind"], "Material": f["material"], "Made": f["made"], "Maker": ln["made_by"].name}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in box.items())
    paras = "".join(f"<p>{x}</p>" for x in extra)
    return (
        f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(e.name)} - Atlas of Elsewhere"
        f"</title><link rel=\"canonical\" href=\"{e.url}\"></head><body>"
        '<nav class="site-nav"><a href="/">Atlas of Elsewhere</a> | <a href="/random">Random page</a> | '
        '<a href="/help">Help</a></nav>'
        f'<main><article><h1>{html.escape(e.name)}</h1>'
        f'<figure><img src="/media/{e.slug}.png" alt="{html.escape(e.name)}"></figure>'
        f'<p>{lead}</p>{paras}<table class="infobox">{rows}</table></article></main>'
        '<footer class="footer">Atlas of Elsewhere is a generated world for testing agents. '
        "All content is fictional.</footer></body></html>"
    )


def questions(entities: list[Entity], seed: int, save_image: Callable[[Entity, str, int], str]) -> list[dict]:
    """Questions with gold answers and tool paths; `save_image(entity, transform, n)` writes a query picture."""
    rng = random.Random(seed + 1)
    by_slug = {e.slug: e for e in entities}
    kinds = {k: [e for e in entities if e.kind == k] for k in ("place", "person", "object")}
    transforms = ["crop", "resize", "rotate", "recolour", "crop"]
    out: list[dict] = []

    def add(question: str, answer: object, path: list[str], hops: list[Entity], image_of: Entity | None) -> None:
        n = len(out) + 1
        image = save_image(image_of, transforms[n % len(transforms)], n) if image_of else None
        out.append({"id": f"q{n:04d}", "question": question, "image": image, "answer": str(answer),
                    "path": path, "hops": [h.url for h in hops]})

    count = max(4, len(entities) // 12)
    for p in rng.sample(kinds["place"], min(count, len(kinds["place"]))):
        add("In what year was the place shown in this picture founded?", p.facts["founded"],
            ["image_search", "web_visit"], [p], p)
    for o in rng.sample(kinds["object"], min(count, len(kinds["object"]))):
        maker = by_slug[o.links["made_by"]]
        add("In which place was the maker of the object in this picture born?",
            by_slug[maker.links["born_in"]].name, ["image_search", "web_visit", "web_visit"], [o, maker], o)
    for person in rng.sample(kinds["person"], min(count, len(kinds["person"]))):
        add("What was the occupation of the person in this portrait?", person.facts["occupation"],
            ["image_search", "web_visit"], [person], person)
    for o in rng.sample(kinds["object"], min(count, len(kinds["object"]))):
        place = by_slug[o.links["kept_in"]]
        add(f"In what year was the place where {o.name} is kept founded?", place.facts["founded"],
            ["text_search", "web_visit", "web_visit"], [o, place], None)
    mentored = [p for p in kinds["person"] if "mentor" in p.links]
    for person in rng.sample(mentored, min(count, len(mentored))):
        mentor = by_slug[person.links["mentor"]]
        add(f"In what year was the mentor of {person.name} born?", mentor.facts["born"],
            ["text_search", "web_visit", "web_visit"], [person, mentor], None)
    return out


def write_world(out: Path, seed: int, per_kind: int, progress: Callable[[str], None] | None = None) -> None:
    """Write pages, pictures, mirror map, corpus, image index and questions into `out` (an empty folder)."""
    import numpy as np
    from PIL import Image as PILImage

    from ..tools.backends.corpus import Corpus, page_from_file
    from ..tools.backends.image_index import ImageIndex

    say = progress or (lambda s: None)
    entities = make_entities(seed, per_kind)
    by_slug = {e.slug: e for e in entities}
    (out / "wiki").mkdir(parents=True)
    (out / "media").mkdir()
    (out / "questions").mkdir()
    mirror: dict[str, str] = {}
    say(f"drawing {len(entities)} pictures and pages")
    for i, e in enumerate(entities):
        (out / "wiki" / f"{e.slug}.html").write_text(page_html(e, by_slug), encoding="utf-8")
        DRAW[e.kind](seed * 100_003 + i).save(out / "media" / f"{e.slug}.png", optimize=False)
        mirror[e.url] = f"wiki/{e.slug}.html"
        mirror[e.image_url] = f"media/{e.slug}.png"
    mirror[HOST + "/"] = "index.html"
    listing = "".join(f"<li>{_a(e)} ({e.kind})</li>" for e in entities)
    (out / "index.html").write_text(f"<!doctype html><html><head><title>Atlas of Elsewhere</title></head><body><main>"
                                    f"<h1>Atlas of Elsewhere</h1><ul>{listing}</ul></main></body></html>",
                                    encoding="utf-8")
    (out / "mirror.json").write_text(json.dumps(mirror, indent=0, sort_keys=True), encoding="utf-8")

    say("building the text corpus")
    Corpus.build((page_from_file(out / "wiki" / f"{e.slug}.html", e.url) for e in entities), out / "corpus.sqlite")
    say("building the image index")
    ImageIndex.build(((out / "media" / f"{e.slug}.png", e.url, e.name) for e in entities), out / "images.sqlite")

    def save_query_image(e: Entity, transform: str, n: int) -> str:
        im = PILImage.open(out / "media" / f"{e.slug}.png").convert("RGB")
        w, h = im.size
        if transform == "crop":
            x, y = (n * 37) % (w // 2), (n * 53) % (h // 2)
            im = im.crop((x, y, x + w // 2, y + h // 2))
        elif transform == "resize":
            im = im.resize((w // 2, h // 2), PILImage.Resampling.LANCZOS)
        elif transform == "rotate":
            im = im.rotate(8, resample=PILImage.Resampling.BICUBIC, expand=False, fillcolor=(255, 255, 255))
        else:
            tinted = np.asarray(im, dtype=np.float32) * 0.8 + np.array([40.0, 20.0, 0.0])
            im = PILImage.fromarray(np.clip(tinted, 0, 255).astype(np.uint8))
        name = f"questions/q{n:04d}.png"
        im.save(out / name)
        return name

    say("writing questions")
    qs = questions(entities, seed, save_query_image)
    with (out / "questions.jsonl").open("w", encoding="utf-8") as f:
        for q in qs:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    pages = [{"url": e.url, "title": e.name, "kind": e.kind, "image": f"media/{e.slug}.png", "facts": e.facts,
              "links": {k: by_slug[v].url for k, v in e.links.items()}} for e in entities]
    with (out / "entities.jsonl").open("w", encoding="utf-8") as f:
        for p in pages:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
