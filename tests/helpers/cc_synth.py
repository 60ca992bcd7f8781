"""A small WET writer and synthetic web pages, for tests and benchmarks of `cc extract`.

Nothing here is downloaded: pages are random sentences over fixed word lists, so runs
are reproducible for a seed and the language of each page is known.
"""

from __future__ import annotations

import gzip
import random
import uuid

_WORDS = {
    "en": (
        "the of and to with that have be in for on about from after before under between river city "
        "market garden teacher student village weather morning evening history music kitchen window "
        "bridge company council station library doctor family summer winter harbour forest mountain "
        "report season journey engineer farmer painter letter question answer problem decision "
        "walked built opened carried studied described found remembered explained crossed painted "
        "repaired visited measured planted wrote quiet old new small large early late bright careful "
        "local famous narrow busy ancient modern simple"
    ).split(),
    "de": (
        "der die das und mit von zu auf für nicht sich ist ein eine dem den im Stadt Fluss Markt Garten "
        "Lehrer Schüler Dorf Wetter Morgen Abend Geschichte Musik Küche Fenster Brücke Firma Bahnhof "
        "Bibliothek Familie Sommer Winter Hafen Wald Berg Bericht Reise Bauer Maler Brief Frage Antwort "
        "ging baute öffnete trug studierte beschrieb fand erklärte besuchte schrieb ruhig alt neu klein "
        "groß früh spät hell vorsichtig bekannt schmal modern einfach"
    ).split(),
    "ru": (
        "и в не на с что по к из за от до для о как это город река рынок сад учитель студент деревня "
        "погода утро вечер история музыка кухня окно мост компания вокзал библиотека семья лето зима "
        "гавань лес гора доклад путешествие инженер фермер письмо вопрос ответ шёл построил открыл "
        "нёс изучал описал нашёл объяснил посетил написал тихий старый новый маленький большой ранний "
        "поздний светлый известный узкий простой"
    ).split(),
}
_ZH = "的是在了和有我们这个城市河流市场花园老师学生村庄天气早晨晚上历史音乐厨房窗户桥梁公司车站图书馆家庭夏天冬天港口森林山报告旅行工程师农民画家信问题回答走建造打开研究描述发现解释访问写安静古老新小大"
_HEADER_LANG = {"en": "eng", "de": "deu", "ru": "rus", "zh": "zho"}
NAV_LINES = (
    "Home",
    "About us",
    "Contact",
    "Share this article on Facebook",
    "Copyright 2024 Example Media Group",
    "Read more stories from our newsroom",
    "Follow us for daily updates and offers",
)


def sentence(rng: random.Random, lang: str) -> str:
    if lang == "zh":
        return "".join(rng.choice(_ZH) for _ in range(rng.randint(12, 30))) + "。"
    words = [rng.choice(_WORDS[lang]) for _ in range(rng.randint(8, 18))]
    return " ".join(words).capitalize() + rng.choice(".....!?")


def page(rng: random.Random, lang: str = "en", n_lines: int | None = None) -> str:
    """A plausible article: lines of one to three sentences."""
    n_lines = n_lines or rng.randint(6, 16)
    return "\n".join(" ".join(sentence(rng, lang) for _ in range(rng.randint(1, 3))) for _ in range(n_lines))


def record(
    url: str,
    text: str | bytes,
    lang_header: str | None = None,
    content_length: int | None = None,
    record_type: str = "conversion",
) -> bytes:
    """One WET record; `content_length` overrides the true length to make a malformed one."""
    body = text.encode() if isinstance(text, str) else text
    headers = [
        "WARC/1.0",
        f"WARC-Type: {record_type}",
        f"WARC-Target-URI: {url}",
        "WARC-Date: 2024-02-20T10:00:00Z",
        f"WARC-Record-ID: <urn:uuid:{uuid.UUID(int=random.Random(url).getrandbits(128))}>",
        "Content-Type: text/plain",
    ]
    if lang_header:
        headers.append(f"WARC-Identified-Content-Language: {lang_header}")
    headers.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body + b"\r\n\r\n"


def write_wet(path, records: list[bytes], compress: bool = True) -> None:
    """Write records as Common Crawl does: a warcinfo record first, one gzip member per record."""
    info = record("", "software: fastgpt-tests cc_synth\r\n", record_type="warcinfo")
    with open(path, "wb") as f:
        for rec in [info, *records]:
            f.write(gzip.compress(rec, compresslevel=1) if compress else rec)


def mixed_records(seed: int, n: int, prefix: str = "http://example.com") -> list[bytes]:
    """Pages in about Common Crawl's proportions: 45% English (of which a quarter are
    duplicates, navigation-heavy, very short or spam pages), 55% other languages; 80% of
    pages carry the WARC-Identified-Content-Language header, as most CC records do."""
    rng = random.Random(seed)
    out, english = [], []
    for i in range(n):
        url = f"<{prefix}/{seed}/{i}>"
        lang, kind = "en", rng.random()
        if rng.random() < 0.55:
            lang = rng.choice(("de", "ru", "zh"))
            text = page(rng, lang)
        elif kind < 0.75 or not english:
            text = page(rng, "en")
            english.append(text)
        elif kind < 0.81:
            text = rng.choice(english)  # exact duplicate
        elif kind < 0.88:
            body = page(rng, "en").split("\n")
            text = "\n".join(NAV_LINES[:4] + tuple(body) + NAV_LINES[4:])
        elif kind < 0.95:
            text = sentence(rng, "en")  # too short
        else:
            text = "\n".join([sentence(rng, "en")] * 20)  # repeated lines
        header = _HEADER_LANG[lang] if rng.random() < 0.8 else None
        out.append(record(url, text, header))
    return out
