//! An owned, lossless XML tree: the source of truth for every libvirt document Vireo
//! keeps.
//!
//! libvirt's XML vocabularies are large and keep growing; modelling every element as a
//! Rust struct would drop whatever we do not model yet. Instead a document is parsed
//! into this small DOM (elements with ordered attributes, text, comments, CDATA and
//! processing instructions, namespace declarations kept as ordinary attributes) and the
//! typed views in the sibling modules read and edit it in place. What no view knows
//! about is written back untouched.
//!
//! Whitespace-only text between elements is layout, not content: it is dropped when
//! parsing and regenerated (libvirt style, 2-space indent) when writing. Text inside
//! text-only or mixed-content elements is kept exactly.
//!
//! Parsing uses quick-xml's event reader plus the well-formedness checks quick-xml
//! leaves to its users (names, entity references, content outside the root, unclosed
//! elements, illegal characters), so that malformed input is rejected with a position
//! the way libxml2 would reject it. The parser never panics.

use std::borrow::Cow;

use quick_xml::errors::{Error as QxError, IllFormedError, SyntaxError};
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use crate::error::XmlError;

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data, unescaped.
    Text(String),
    /// The body of a comment (between `<!--` and `-->`).
    Comment(String),
    /// The body of a CDATA section.
    CData(String),
    /// The body of a processing instruction (target and data, between `<?` and `?>`).
    ProcessingInstruction(String),
}

impl Node {
    /// The element, if this node is one.
    pub fn as_element(&self) -> Option<&Element> {
        match self {
            Node::Element(e) => Some(e),
            _ => None,
        }
    }

    /// The element, mutably, if this node is one.
    pub fn as_element_mut(&mut self) -> Option<&mut Element> {
        match self {
            Node::Element(e) => Some(e),
            _ => None,
        }
    }
}

/// An element: qualified name, attributes in document order, children.
///
/// Namespace declarations (`xmlns`, `xmlns:p`) are ordinary entries of `attrs`, so they
/// stay where they were written. Names keep their prefix (`qemu:commandline`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Qualified name, prefix included.
    pub name: String,
    /// Attributes in document order, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Child nodes in document order.
    pub children: Vec<Node>,
}

/// A whole document: the root element plus the comments and processing instructions
/// around it (the XML declaration and doctype are not kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    /// Comments and processing instructions before the root.
    pub prolog: Vec<Node>,
    /// The root element.
    pub root: Element,
    /// Comments and processing instructions after the root.
    pub epilog: Vec<Node>,
}

impl Document {
    /// Parses a complete document.
    pub fn parse(xml: &str) -> Result<Document, XmlError> {
        Parser::new(xml).run()
    }

    /// Writes the document: prolog nodes, root, epilog nodes, one per line.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(1024);
        for n in &self.prolog {
            crate::writer::write_node(&mut out, n, 0);
            out.push('\n');
        }
        crate::writer::write_element(&mut out, &self.root, 0);
        out.push('\n');
        for n in &self.epilog {
            crate::writer::write_node(&mut out, n, 0);
            out.push('\n');
        }
        out
    }
}

/// XML whitespace (the four characters the spec calls `S`).
pub(crate) fn is_xml_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Whether `s` is empty or only XML whitespace.
pub(crate) fn is_blank(s: &str) -> bool {
    s.chars().all(is_xml_ws)
}

impl Element {
    /// A new empty element.
    pub fn new(name: impl Into<String>) -> Element {
        Element {
            name: name.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// A new element whose only content is `text`.
    pub fn with_text(name: impl Into<String>, text: impl Into<String>) -> Element {
        let mut e = Element::new(name);
        e.set_text(text);
        e
    }

    /// Parses a document and returns its root element (comments around the root are
    /// dropped; use [`Document::parse`] to keep them).
    pub fn parse(xml: &str) -> Result<Element, XmlError> {
        Document::parse(xml).map(|d| d.root)
    }

    /// The name without its namespace prefix.
    pub fn local_name(&self) -> &str {
        match self.name.split_once(':') {
            Some((_, local)) => local,
            None => &self.name,
        }
    }

    /// The namespace prefix, if the name has one.
    pub fn prefix(&self) -> Option<&str> {
        self.name.split_once(':').map(|(p, _)| p)
    }

    /// The namespace URI this element declares for `prefix` (`None` for the default
    /// namespace), looking only at this element's own declarations.
    pub fn declared_namespace(&self, prefix: Option<&str>) -> Option<&str> {
        match prefix {
            Some(p) => self
                .attrs
                .iter()
                .find_map(|(k, v)| (k.strip_prefix("xmlns:") == Some(p)).then_some(v.as_str())),
            None => self.attr("xmlns"),
        }
    }

    /// Child elements whose namespace URI is `uri`, resolving each child's prefix
    /// against its own declarations, then this element's. This is how libvirt finds
    /// extension elements such as `qemu:commandline` (by URI, whatever the prefix).
    /// Declarations on further ancestors are not consulted.
    pub fn children_in_namespace<'a>(&'a self, uri: &'a str) -> impl Iterator<Item = &'a Element> {
        self.elements().filter(move |c| {
            let prefix = c.prefix();
            c.declared_namespace(prefix)
                .or_else(|| self.declared_namespace(prefix))
                == Some(uri)
        })
    }

    // ----- attributes -----

    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the attribute is present.
    pub fn has_attr(&self, name: &str) -> bool {
        self.attrs.iter().any(|(k, _)| k == name)
    }

    /// Sets an attribute: replaces the value in place if present, else appends.
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
        self
    }

    /// Sets an attribute; when it is new, inserts it right after the attribute
    /// `after` (or first if `after` is absent).
    pub fn set_attr_after(
        &mut self,
        after: &str,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> &mut Self {
        let name = name.into();
        let value = value.into();
        if let Some(slot) = self.attrs.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = value;
            return self;
        }
        let at = self
            .attrs
            .iter()
            .position(|(k, _)| k == after)
            .map(|i| i + 1)
            .unwrap_or(0);
        self.attrs.insert(at, (name, value));
        self
    }

    /// Removes an attribute, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let i = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(i).1)
    }

    // ----- children -----

    /// Child elements, in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(Node::as_element)
    }

    /// Child elements, mutably.
    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(Node::as_element_mut)
    }

    /// Child elements with the given (qualified) name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.elements().filter(move |e| e.name == name)
    }

    /// Child elements with the given name, mutably.
    pub fn children_named_mut<'a>(
        &'a mut self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a mut Element> {
        self.elements_mut().filter(move |e| e.name == name)
    }

    /// The first child element with the given name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    /// The first child element with the given name, mutably.
    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.name == name)
    }

    /// The text of the first child element with the given name.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(Element::text)
    }

    /// The first child with the given name, appended (empty) if absent.
    pub fn ensure_child(&mut self, name: &str) -> &mut Element {
        let idx = match self.element_index(name) {
            Some(i) => i,
            None => {
                self.children.push(Node::Element(Element::new(name)));
                self.children.len() - 1
            }
        };
        self.element_at(idx)
    }

    /// Removes every child element with the given name; returns how many went.
    pub fn remove_children(&mut self, name: &str) -> usize {
        let before = self.children.len();
        self.children
            .retain(|n| !matches!(n, Node::Element(e) if e.name == name));
        before - self.children.len()
    }

    /// Appends a child element and returns it.
    pub fn push_child(&mut self, child: Element) -> &mut Element {
        self.children.push(Node::Element(child));
        let idx = self.children.len() - 1;
        self.element_at(idx)
    }

    /// Inserts `child` right after the last child element named `after`; appends it
    /// when there is none. Returns the inserted element.
    pub fn insert_child_after(&mut self, after: &str, child: Element) -> &mut Element {
        self.insert_child_after_any(&[after], child)
    }

    /// Inserts `child` after the last child element whose name is the first of
    /// `candidates` present (tried in order); appends when none is present. Handy to
    /// keep libvirt's element order ("after `<uuid>`, else after `<name>`").
    pub fn insert_child_after_any(&mut self, candidates: &[&str], child: Element) -> &mut Element {
        let at = candidates
            .iter()
            .find_map(|name| {
                self.children
                    .iter()
                    .rposition(|n| matches!(n, Node::Element(e) if e.name == *name))
            })
            .map(|i| i + 1)
            .unwrap_or(self.children.len());
        self.children.insert(at, Node::Element(child));
        self.element_at(at)
    }

    /// Inserts `child` right before the first child element whose name is in
    /// `candidates`; appends when none is present. Returns the inserted element.
    pub fn insert_child_before_any(&mut self, candidates: &[&str], child: Element) -> &mut Element {
        let at = self
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if candidates.contains(&e.name.as_str())))
            .unwrap_or(self.children.len());
        self.children.insert(at, Node::Element(child));
        self.element_at(at)
    }

    /// Inserts a node at `index` among the children (clamped to the end).
    pub fn insert_node(&mut self, index: usize, node: Node) {
        let index = index.min(self.children.len());
        self.children.insert(index, node);
    }

    fn element_index(&self, name: &str) -> Option<usize> {
        self.children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if e.name == name))
    }

    /// The element at a child index known to hold one.
    fn element_at(&mut self, idx: usize) -> &mut Element {
        match &mut self.children[idx] {
            Node::Element(e) => e,
            // Callers only pass indices they just found or created as elements.
            _ => unreachable!("child index does not hold an element"),
        }
    }

    // ----- text -----

    /// The concatenated direct text (text and CDATA children), as written.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) | Node::CData(t) => s.push_str(t),
                _ => {}
            }
        }
        s
    }

    /// [`text`](Self::text) with surrounding whitespace removed.
    pub fn text_trimmed(&self) -> String {
        self.text().trim_matches(is_xml_ws).to_string()
    }

    /// Replaces the direct text: text and CDATA children are removed and `text` is
    /// placed where the first of them was (or at the end). Child elements and
    /// comments stay.
    pub fn set_text(&mut self, text: impl Into<String>) -> &mut Self {
        let text = text.into();
        let first = self
            .children
            .iter()
            .position(|n| matches!(n, Node::Text(_) | Node::CData(_)));
        self.children
            .retain(|n| !matches!(n, Node::Text(_) | Node::CData(_)));
        if !text.is_empty() {
            let at = first
                .unwrap_or(self.children.len())
                .min(self.children.len());
            self.children.insert(at, Node::Text(text));
        }
        self
    }

    // ----- paths -----

    /// The element reached by following child names, e.g. `&["os", "type"]`.
    pub fn path(&self, path: &[&str]) -> Option<&Element> {
        let mut cur = self;
        for name in path {
            cur = cur.child(name)?;
        }
        Some(cur)
    }

    /// [`path`](Self::path), mutably.
    pub fn path_mut(&mut self, path: &[&str]) -> Option<&mut Element> {
        let mut cur = self;
        for name in path {
            cur = cur.child_mut(name)?;
        }
        Some(cur)
    }

    /// Like [`path_mut`](Self::path_mut) but creates missing elements (appended).
    pub fn ensure_path(&mut self, path: &[&str]) -> &mut Element {
        let mut cur = self;
        for name in path {
            cur = cur.ensure_child(name);
        }
        cur
    }

    /// The text of the element at `path`.
    pub fn path_text(&self, path: &[&str]) -> Option<String> {
        self.path(path).map(Element::text)
    }

    /// An attribute of the element at `path`.
    pub fn path_attr(&self, path: &[&str], attr: &str) -> Option<&str> {
        self.path(path).and_then(|e| e.attr(attr))
    }

    /// Whether an element exists at `path`.
    pub fn has_path(&self, path: &[&str]) -> bool {
        self.path(path).is_some()
    }

    /// Visits this element and all descendants (depth first, document order),
    /// allowing edits.
    pub fn walk_mut(&mut self, f: &mut dyn FnMut(&mut Element)) {
        f(self);
        for c in self.elements_mut() {
            c.walk_mut(f);
        }
    }

    // ----- writing -----

    /// Writes the element libvirt-style, followed by a newline.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(1024);
        self.write_to(&mut out);
        out.push('\n');
        out
    }

    /// Appends the element (no trailing newline) to `out`.
    pub fn write_to(&self, out: &mut String) {
        crate::writer::write_element(out, self, 0);
    }
}

/// Removes layout whitespace from a freshly parsed element (see the module docs).
pub(crate) fn strip_layout_whitespace(e: &mut Element) {
    let significant = e.children.iter().any(|c| match c {
        Node::Text(t) => !is_blank(t),
        Node::CData(_) => true,
        _ => false,
    });
    if significant {
        return;
    }
    let has_non_text = e.children.iter().any(|c| !matches!(c, Node::Text(_)));
    if has_non_text
        || e.children
            .iter()
            .any(|c| matches!(c, Node::Text(t) if t.contains('\n')))
    {
        e.children.retain(|c| !matches!(c, Node::Text(_)));
    }
}

// ===================================================================================
// Parser
// ===================================================================================

/// Deepest element nesting accepted, as libxml2 does without `XML_PARSE_HUGE`. It
/// also bounds the recursion of writing, comparing and dropping trees.
pub const MAX_DEPTH: usize = 256;

/// An element being built, with the offset of its start tag (for error messages).
struct Open {
    element: Element,
    start: usize,
}

struct Parser<'a> {
    input: &'a str,
    /// Offset of `input` inside the caller's text (a skipped BOM).
    base: usize,
    full: &'a str,
    stack: Vec<Open>,
    root: Option<Element>,
    prolog: Vec<Node>,
    epilog: Vec<Node>,
    text: String,
    text_start: usize,
}

impl<'a> Parser<'a> {
    fn new(full: &'a str) -> Parser<'a> {
        let (input, base) = match full.strip_prefix('\u{feff}') {
            Some(rest) => (rest, full.len() - rest.len()),
            None => (full, 0),
        };
        Parser {
            input,
            base,
            full,
            stack: Vec::new(),
            root: None,
            prolog: Vec::new(),
            epilog: Vec::new(),
            text: String::new(),
            text_start: 0,
        }
    }

    fn err(&self, offset: usize, message: impl Into<String>) -> XmlError {
        XmlError::at(self.full, offset.saturating_add(self.base), message)
    }

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.input.len());
        self.input.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn run(mut self) -> Result<Document, XmlError> {
        let illegal = first_illegal_char(self.input);
        let result = self.run_events();
        match (result, illegal) {
            (Err(e), Some((pos, c))) => {
                let XmlError::Syntax { offset, .. } = &e;
                if offset.saturating_sub(self.base) < pos {
                    Err(e)
                } else {
                    Err(self.illegal_char_error(pos, c))
                }
            }
            (Err(e), None) => Err(e),
            (Ok(doc), Some((pos, c))) => {
                drop(doc);
                Err(self.illegal_char_error(pos, c))
            }
            (Ok(doc), None) => Ok(doc),
        }
    }

    fn illegal_char_error(&self, pos: usize, c: char) -> XmlError {
        self.err(
            pos,
            format!("Char 0x{:X} out of allowed range", u32::from(c)),
        )
    }

    fn run_events(&mut self) -> Result<Document, XmlError> {
        let input = self.input;
        let mut reader = Reader::from_str(input);
        {
            let cfg = reader.config_mut();
            cfg.check_comments = true;
            cfg.check_end_names = true;
            cfg.expand_empty_elements = false;
            cfg.trim_text(false);
        }
        let mut seen_decl_or_content = false;
        loop {
            let pos = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
            let event = match reader.read_event() {
                Ok(ev) => ev,
                Err(e) => {
                    let at = usize::try_from(reader.error_position()).unwrap_or(usize::MAX);
                    return Err(self.reader_error(e, at));
                }
            };
            match event {
                Event::Decl(d) => {
                    if seen_decl_or_content || pos != 0 {
                        return Err(self.err(
                            pos,
                            "XML declaration allowed only at the start of the document",
                        ));
                    }
                    if d.version().is_err() {
                        return Err(self.err(pos, "Malformed declaration expecting version"));
                    }
                }
                Event::DocType(_) => {
                    if self.root.is_some() || !self.stack.is_empty() {
                        return Err(self.err(pos, "Extra content at the end of the document"));
                    }
                }
                Event::Start(s) => {
                    self.flush_text();
                    let el = self.start_element(&s, pos)?;
                    if self.stack.is_empty() && self.root.is_some() {
                        return Err(self.err(pos, "Extra content at the end of the document"));
                    }
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(self.err(
                            pos,
                            format!(
                                "Excessive depth in document: {MAX_DEPTH} use XML_PARSE_HUGE option"
                            ),
                        ));
                    }
                    self.stack.push(Open {
                        element: el,
                        start: pos,
                    });
                }
                Event::Empty(s) => {
                    self.flush_text();
                    let el = self.start_element(&s, pos)?;
                    if self.stack.is_empty() && self.root.is_some() {
                        return Err(self.err(pos, "Extra content at the end of the document"));
                    }
                    self.close(el);
                }
                Event::End(_) => {
                    // quick-xml has already checked that the name matches.
                    self.flush_text();
                    match self.stack.pop() {
                        Some(open) => {
                            let mut el = open.element;
                            strip_layout_whitespace(&mut el);
                            self.close(el);
                        }
                        None => {
                            return Err(self.err(pos, "StartTag: invalid element name"));
                        }
                    }
                }
                Event::Text(t) => {
                    let content = t.xml10_content();
                    if self.stack.is_empty() {
                        if let Some(i) = content.find(|c| !is_xml_ws(c)) {
                            let raw_i = t.find(|c: char| !is_xml_ws(c)).unwrap_or(i);
                            let at = pos.saturating_add(raw_i);
                            return Err(if self.root.is_some() {
                                self.err(at, "Extra content at the end of the document")
                            } else {
                                self.err(at, "Start tag expected, '<' not found")
                            });
                        }
                    } else {
                        self.push_text(&content, pos);
                    }
                }
                Event::GeneralRef(r) => {
                    if self.stack.is_empty() {
                        return Err(if self.root.is_some() {
                            self.err(pos, "Extra content at the end of the document")
                        } else {
                            self.err(pos, "Start tag expected, '<' not found")
                        });
                    }
                    let resolved = resolve_reference(&r).map_err(|m| self.err(pos, m))?;
                    self.push_text(&resolved, pos);
                }
                Event::CData(c) => {
                    if self.stack.is_empty() {
                        return Err(self.err(pos, "Extra content at the end of the document"));
                    }
                    self.flush_text();
                    let body = c.xml10_content().into_owned();
                    self.push_node(Node::CData(body));
                }
                Event::Comment(c) => {
                    self.flush_text();
                    let body = c.xml10_content().into_owned();
                    self.push_node(Node::Comment(body));
                }
                Event::PI(p) => {
                    let target = p.target();
                    if !is_valid_name(target) {
                        return Err(self.err(pos, "xmlParsePI : no target name"));
                    }
                    if target.eq_ignore_ascii_case("xml") {
                        return Err(self.err(
                            pos,
                            "XML declaration allowed only at the start of the document",
                        ));
                    }
                    self.flush_text();
                    let body = p.into_inner().replace("\r\n", "\n");
                    self.push_node(Node::ProcessingInstruction(body));
                }
                Event::Eof => {
                    if let Some(open) = self.stack.last() {
                        let end = self.input.trim_end_matches(is_xml_ws).len();
                        return Err(self.err(
                            end,
                            format!(
                                "Premature end of data in tag {} line {}",
                                open.element.name,
                                self.line_of(open.start)
                            ),
                        ));
                    }
                    return match self.root.take() {
                        Some(root) => Ok(Document {
                            prolog: std::mem::take(&mut self.prolog),
                            root,
                            epilog: std::mem::take(&mut self.epilog),
                        }),
                        None => Err(self.err(self.input.len(), "Document is empty")),
                    };
                }
            }
            seen_decl_or_content = true;
        }
    }

    fn push_text(&mut self, s: &str, pos: usize) {
        if self.text.is_empty() {
            self.text_start = pos;
        }
        self.text.push_str(s);
    }

    fn flush_text(&mut self) {
        if self.text.is_empty() {
            return;
        }
        // An exact-size copy: parsed trees are kept for long (a definition lives as
        // long as its domain), so no growth slack; the buffer is reused.
        let text = self.text.as_str().to_owned();
        self.text.clear();
        if let Some(open) = self.stack.last_mut() {
            open.element.children.push(Node::Text(text));
        }
    }

    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            Some(open) => open.element.children.push(node),
            None if self.root.is_none() => self.prolog.push(node),
            None => self.epilog.push(node),
        }
    }

    fn close(&mut self, mut el: Element) {
        // Drop the growth slack of the vectors (a 72-byte node vector grows to 4
        // slots for one child); the tree is complete below this element.
        el.attrs.shrink_to_fit();
        el.children.shrink_to_fit();
        match self.stack.last_mut() {
            Some(parent) => parent.element.children.push(Node::Element(el)),
            None => self.root = Some(el),
        }
    }

    fn start_element(&self, s: &BytesStart<'_>, pos: usize) -> Result<Element, XmlError> {
        let name_q = s.name();
        let name: &str = name_q.as_ref();
        if !is_valid_name(name) {
            return Err(self.err(pos.saturating_add(1), "StartTag: invalid element name"));
        }
        let mut el = Element::new(name);
        for attr in s.attributes() {
            let attr = attr.map_err(|e| self.attr_error(e, pos))?;
            let key: &str = attr.key.as_ref();
            if !is_valid_name(key) {
                return Err(self.err(pos.saturating_add(1), "attributes construct error"));
            }
            let raw: &str = &attr.value;
            if raw.contains('<') {
                return Err(self.err(
                    pos.saturating_add(1),
                    "Unescaped '<' not allowed in attributes values",
                ));
            }
            let value = unescape_attr(raw).map_err(|m| self.err(pos.saturating_add(1), m))?;
            el.attrs.push((key.to_string(), value.into_owned()));
        }
        Ok(el)
    }

    fn attr_error(&self, e: AttrError, tag_start: usize) -> XmlError {
        let (rel, msg) = match e {
            AttrError::ExpectedEq(p) => (p, "Specification mandates value for attribute".into()),
            AttrError::ExpectedValue(p) => (p, "AttValue: \" or ' expected".into()),
            AttrError::UnquotedValue(p) => (p, "AttValue: \" or ' expected".into()),
            AttrError::ExpectedQuote(p, _) => (p, "attributes construct error".to_string()),
            AttrError::Duplicated(p, _) => (p, "Attribute redefined".to_string()),
        };
        let msg: String = msg;
        self.err(tag_start.saturating_add(1).saturating_add(rel), msg)
    }

    fn reader_error(&self, e: QxError, at: usize) -> XmlError {
        let msg: Cow<'static, str> = match &e {
            QxError::Syntax(s) => match s {
                SyntaxError::InvalidBangMarkup => "StartTag: invalid element name".into(),
                SyntaxError::UnclosedPI => "ParsePI: PI not terminated".into(),
                SyntaxError::UnclosedXmlDecl => "parsing XML declaration: '?>' expected".into(),
                SyntaxError::UnclosedComment => "Comment not terminated".into(),
                SyntaxError::UnclosedDoctype => "DOCTYPE improperly terminated".into(),
                SyntaxError::UnclosedCData => "CData section not finished".into(),
                SyntaxError::UnclosedTag => "Couldn't find end of Start Tag".into(),
                SyntaxError::UnclosedSingleQuotedAttributeValue => "AttValue: ' expected".into(),
                SyntaxError::UnclosedDoubleQuotedAttributeValue => "AttValue: \" expected".into(),
            },
            QxError::IllFormed(i) => match i {
                IllFormedError::MismatchedEndTag { expected, found } => {
                    let line = self
                        .stack
                        .last()
                        .map(|o| self.line_of(o.start))
                        .unwrap_or(1);
                    format!("Opening and ending tag mismatch: {expected} line {line} and {found}")
                        .into()
                }
                IllFormedError::UnmatchedEndTag(_) => {
                    if self.root.is_some() {
                        "Extra content at the end of the document".into()
                    } else {
                        "StartTag: invalid element name".into()
                    }
                }
                IllFormedError::MissingEndTag(t) => {
                    format!("Premature end of data in tag {t}").into()
                }
                IllFormedError::DoubleHyphenInComment => "Double hyphen within comment".into(),
                IllFormedError::UnclosedReference => "EntityRef: expecting ';'".into(),
                IllFormedError::MissingDeclVersion(_) => {
                    "Malformed declaration expecting version".into()
                }
                IllFormedError::UnknownVersion => "Unsupported version".into(),
                IllFormedError::MissingDoctypeName => {
                    "xmlParseDocTypeDecl : no DOCTYPE name !".into()
                }
            },
            QxError::InvalidAttr(_) => "attributes construct error".into(),
            QxError::Escape(_) => "EntityRef: expecting ';'".into(),
            other => format!("{other}").into(),
        };
        self.err(at, msg)
    }
}

/// The first character XML 1.0 does not allow anywhere in a document.
fn first_illegal_char(s: &str) -> Option<(usize, char)> {
    s.char_indices().find(|(_, c)| !is_xml_char(*c))
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic()
        || c == '_'
        || c == ':'
        || (!c.is_ascii() && c.is_alphanumeric())
        || matches!(c, '\u{C0}'..='\u{2FF}' | '\u{370}'..='\u{1FFF}' | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FFFD}' | '\u{10000}'..)
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || c.is_ascii_digit()
        || matches!(c, '-' | '.' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Whether `s` is an XML `Name`.
pub(crate) fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if is_name_start(c) => chars.all(is_name_char),
        _ => false,
    }
}

/// Resolves a general reference (`amp`, `#x41`, ...) to its text.
fn resolve_reference(name: &str) -> Result<String, String> {
    if let Some(num) = name.strip_prefix('#') {
        let parsed = match num.strip_prefix('x') {
            Some(hex) if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                u32::from_str_radix(hex, 16).ok()
            }
            Some(_) => None,
            None if !num.is_empty() && num.chars().all(|c| c.is_ascii_digit()) => {
                num.parse::<u32>().ok()
            }
            None => None,
        };
        return match parsed.and_then(char::from_u32) {
            Some(c) if is_xml_char(c) => Ok(c.to_string()),
            _ => Err(format!(
                "xmlParseCharRef: invalid xmlChar value {}",
                parsed.unwrap_or(0)
            )),
        };
    }
    match name {
        "amp" => Ok("&".into()),
        "lt" => Ok("<".into()),
        "gt" => Ok(">".into()),
        "apos" => Ok("'".into()),
        "quot" => Ok("\"".into()),
        "" => Err("xmlParseEntityRef: no name".into()),
        other => Err(format!("Entity '{other}' not defined")),
    }
}

/// Unescapes and normalizes an attribute value (XML attribute-value normalization for
/// CDATA attributes: tab, CR, LF become spaces, CRLF one space).
fn unescape_attr(raw: &str) -> Result<Cow<'_, str>, String> {
    if !raw.contains(['&', '\t', '\n', '\r']) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '\t', '\n', '\r']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        if c == b'&' {
            let after = &rest[i + 1..];
            let end = after
                .find(';')
                .ok_or_else(|| "EntityRef: expecting ';'".to_string())?;
            out.push_str(&resolve_reference(&after[..end])?);
            rest = &after[end + 1..];
        } else {
            out.push(' ');
            rest = if c == b'\r' && rest[i + 1..].starts_with('\n') {
                &rest[i + 2..]
            } else {
                &rest[i + 1..]
            };
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(xml: &str) -> XmlError {
        Element::parse(xml).expect_err("should fail")
    }

    #[test]
    fn parse_basic_tree() {
        let e = Element::parse(
            "<?xml version='1.0'?>\n<!DOCTYPE x>\n<a x='1' y=\"&lt;2&apos;\">\n  <b>t&amp;u</b>\n  <c/>\n</a>\n",
        )
        .unwrap();
        assert_eq!(e.name, "a");
        assert_eq!(
            e.attrs,
            vec![("x".into(), "1".into()), ("y".into(), "<2'".into())]
        );
        assert_eq!(e.children.len(), 2);
        assert_eq!(e.child_text("b").as_deref(), Some("t&u"));
        assert!(e.child("c").unwrap().children.is_empty());
    }

    #[test]
    fn keeps_comments_cdata_pi_and_text() {
        let xml = "<!-- before --><a><!--c--><b><![CDATA[x<y]]></b><?pi data?><t> sp </t>mixed <i>x</i> tail</a><!--after-->";
        let d = Document::parse(xml).unwrap();
        assert_eq!(d.prolog, vec![Node::Comment(" before ".into())]);
        assert_eq!(d.epilog, vec![Node::Comment("after".into())]);
        let a = &d.root;
        assert_eq!(a.children[0], Node::Comment("c".into()));
        assert_eq!(a.child("b").unwrap().text(), "x<y");
        assert_eq!(a.child("t").unwrap().text(), " sp ");
        assert!(matches!(&a.children[2], Node::ProcessingInstruction(p) if p == "pi data"));
        let again = Document::parse(&d.to_xml()).unwrap();
        assert_eq!(again, d);
    }

    #[test]
    fn whitespace_rules() {
        let e = Element::parse("<a>\n  <b>  </b>\n  <c>\n  </c>\n  <d> x </d>\n</a>").unwrap();
        assert_eq!(e.child("b").unwrap().text(), "  ");
        assert!(e.child("c").unwrap().children.is_empty());
        assert_eq!(e.child("d").unwrap().text(), " x ");
        assert_eq!(e.children.len(), 3);
    }

    #[test]
    fn editing_api() {
        let mut e =
            Element::parse("<domain type='kvm'><name>a</name><os><type>hvm</type></os></domain>")
                .unwrap();
        assert_eq!(e.path_text(&["os", "type"]).as_deref(), Some("hvm"));
        e.insert_child_after("name", Element::with_text("uuid", "u"));
        assert_eq!(
            e.elements().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["name", "uuid", "os"]
        );
        e.set_attr_after("type", "id", "3");
        e.set_attr("type", "qemu");
        assert_eq!(e.attrs[0], ("type".into(), "qemu".into()));
        assert_eq!(e.attrs[1], ("id".into(), "3".into()));
        assert_eq!(e.remove_attr("id").as_deref(), Some("3"));
        e.ensure_path(&["devices", "emulator"]).set_text("/bin/q");
        assert_eq!(
            e.path_text(&["devices", "emulator"]).as_deref(),
            Some("/bin/q")
        );
        assert_eq!(e.remove_children("uuid"), 1);
        e.child_mut("name").unwrap().set_text("b");
        assert_eq!(e.child_text("name").as_deref(), Some("b"));
        assert_eq!(e.children_named("os").count(), 1);
        assert!(e.has_path(&["os", "type"]));
    }

    #[test]
    fn malformed_inputs_have_positions() {
        let e = err("<domain>\n  <name>x</nam>\n</domain>");
        assert_eq!(e.line(), 2);
        assert!(
            e.message()
                .starts_with("Opening and ending tag mismatch: name line 2 and nam"),
            "{e}"
        );
        let e = err("<a>\n<b>");
        assert!(
            e.message()
                .starts_with("Premature end of data in tag b line 2"),
            "{e}"
        );
        let e = err("");
        assert_eq!(e.message(), "Document is empty");
        let e = err("junk");
        assert_eq!(e.message(), "Start tag expected, '<' not found");
        assert_eq!((e.line(), e.column()), (1, 1));
        let e = err("<a/><b/>");
        assert_eq!(e.message(), "Extra content at the end of the document");
        assert_eq!(e.column(), 5);
        let e = err("<a>&foo;</a>");
        assert_eq!(e.message(), "Entity 'foo' not defined");
        let e = err("<a x='1' x='2'/>");
        assert_eq!(e.message(), "Attribute redefined");
        let e = err("<a x='<'/>");
        assert!(e.message().contains("Unescaped '<'"));
        let e = err("<a>\u{1}</a>");
        assert_eq!(e.message(), "Char 0x1 out of allowed range");
        assert_eq!(e.column(), 4);
        let e = err("<1a/>");
        assert_eq!(e.message(), "StartTag: invalid element name");
        let e = err("<a><!-- x -- y --></a>");
        assert!(e.message().contains("comment"));
        let e = err("<a>&#0;</a>");
        assert!(e.message().contains("invalid xmlChar"));
        let e = err("<a>text</a> trailing");
        assert_eq!(e.message(), "Extra content at the end of the document");
        let e = err("<a></a></b>");
        assert_eq!(e.message(), "Extra content at the end of the document");
    }

    #[test]
    fn attr_whitespace_normalized_and_entities() {
        let e = Element::parse("<a v='x&#10;y\tz' w='&#x41;&#66;'/>").unwrap();
        assert_eq!(e.attr("v"), Some("x\ny z"));
        assert_eq!(e.attr("w"), Some("AB"));
    }

    #[test]
    fn namespace_lookup_by_uri() {
        let e = Element::parse(
            "<domain xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'><q:commandline/><x:y xmlns:x='http://libvirt.org/schemas/domain/qemu/1.0'/><q2:z/></domain>",
        )
        .unwrap();
        let found: Vec<_> = e
            .children_in_namespace("http://libvirt.org/schemas/domain/qemu/1.0")
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(found, ["q:commandline", "x:y"]);
    }

    #[test]
    fn bom_is_skipped() {
        let e = Element::parse("\u{feff}<a/>").unwrap();
        assert_eq!(e.name, "a");
    }
}
