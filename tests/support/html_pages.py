"""The service's pages read back as a tree (stdlib html.parser), for tests that look for elements by tag, class,
id or attribute without a browser."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    """A tag with its attributes, its text (its descendants' included) and its children."""

    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        """Its class names."""
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        """Its text and that of everything inside it."""
        return "".join(self.texts)

    def descendants(self):
        """Every element inside it, in document order."""
        for child in self.children:
            yield child
            yield from child.descendants()

    def find_all(self, tag: str | None = None, css_class: str | None = None, **attrs: str) -> list[Element]:
        """The elements inside it with this tag, class and attribute values (attribute names with _ for -)."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        return [element for element in self.descendants()
                if (tag is None or element.tag == tag) and (css_class is None or css_class in element.classes)
                and all(element.attrs.get(name) == value for name, value in wanted.items())]

    def by_id(self, element_id: str) -> Element:
        """The one element with this id."""
        found = self.find_all(id=element_id)
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Element("#document", {})

    def handle_starttag(self, tag, attrs):
        element = self._add(tag, attrs)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag, attrs):
        self._add(tag, attrs)

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        node = self.current
        while node is not None:
            node.texts.append(data)
            node = node.parent

    def _add(self, tag, attrs) -> Element:
        element = Element(tag, {name: value or "" for name, value in attrs}, parent=self.current)
        self.current.children.append(element)
        return element


def parse(page: str) -> Element:
    """The page as a tree; its root holds the <html> element."""
    builder = _Builder()
    builder.feed(page)
    builder.close()
    return builder.root
