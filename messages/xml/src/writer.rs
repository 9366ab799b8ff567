//! Serialises the DOM the way libvirt formats XML.
//!
//! libvirt's formatter uses a 2-space indent, single-quoted attributes, `<x/>` for
//! empty elements and writes elements holding only text on one line. Producing the
//! same shape lets golden files compare textually against a reference libvirtd. The
//! writer appends to one `String`; it never builds intermediate strings per node.
//!
//! Indentation is only added where the parser would drop it again (between children of
//! element-only content), so `parse(write(dom)) == dom` holds. Elements with
//! significant text next to other children (mixed content) are written compactly,
//! exactly as stored.

use crate::dom::{Element, Node, is_blank};

/// Appends `e` (indented at `depth`) without a trailing newline.
pub(crate) fn write_element(out: &mut String, e: &Element, depth: usize) {
    push_indent(out, depth);
    write_compact_or_pretty(out, e, depth, true);
}

/// Appends a non-element node (or an element) at `depth`, without trailing newline.
pub(crate) fn write_node(out: &mut String, n: &Node, depth: usize) {
    match n {
        Node::Element(e) => write_element(out, e, depth),
        other => {
            push_indent(out, depth);
            write_leaf(out, other);
        }
    }
}

fn push_indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Whether an element's children must be written inline, exactly as stored.
fn is_inline(e: &Element) -> bool {
    let significant = e.children.iter().any(|c| match c {
        Node::Text(t) => !is_blank(t),
        Node::CData(_) => true,
        _ => false,
    });
    significant || e.children.iter().all(|c| matches!(c, Node::Text(_)))
}

fn write_start(out: &mut String, e: &Element) {
    out.push('<');
    out.push_str(&e.name);
    for (k, v) in &e.attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("='");
        escape_attr(out, v);
        out.push('\'');
    }
}

fn write_compact_or_pretty(out: &mut String, e: &Element, depth: usize, pretty: bool) {
    write_start(out, e);
    let empty = e
        .children
        .iter()
        .all(|c| matches!(c, Node::Text(t) if t.is_empty()));
    if empty {
        out.push_str("/>");
        return;
    }
    out.push('>');
    if !pretty || is_inline(e) {
        for c in &e.children {
            match c {
                Node::Element(child) => write_compact_or_pretty(out, child, 0, false),
                other => write_leaf(out, other),
            }
        }
    } else {
        for c in &e.children {
            if let Node::Text(_) = c {
                // Only layout whitespace can be here (see `is_inline`).
                continue;
            }
            out.push('\n');
            write_node(out, c, depth + 1);
        }
        out.push('\n');
        push_indent(out, depth);
    }
    out.push_str("</");
    out.push_str(&e.name);
    out.push('>');
}

fn write_leaf(out: &mut String, n: &Node) {
    match n {
        Node::Element(e) => write_compact_or_pretty(out, e, 0, false),
        Node::Text(t) => escape_text(out, t),
        Node::Comment(c) => {
            out.push_str("<!--");
            // "--" may not appear in a comment; keep the text readable but valid.
            let mut prev_dash = false;
            for ch in c.chars().filter(|c| is_writable(*c)) {
                if ch == '-' && prev_dash {
                    out.push(' ');
                }
                out.push(ch);
                prev_dash = ch == '-';
            }
            if prev_dash {
                out.push(' ');
            }
            out.push_str("-->");
        }
        Node::CData(c) => {
            out.push_str("<![CDATA[");
            let clean: String = c.chars().filter(|c| is_writable(*c)).collect();
            out.push_str(&clean.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]>");
        }
        Node::ProcessingInstruction(p) => {
            out.push_str("<?");
            for ch in p.chars().filter(|c| is_writable(*c)) {
                out.push(ch);
            }
            out.push_str("?>");
        }
    }
}

/// Characters XML 1.0 can carry at all; others are dropped (as libvirt's escaping
/// drops control characters).
fn is_writable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Escapes character data: `&`, `<`, `>` and CR (which the parser would otherwise
/// normalise away).
pub(crate) fn escape_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if is_writable(c) => out.push(c),
            _ => {}
        }
    }
}

/// Escapes an attribute value for single quotes: `& < > ' "` and the whitespace
/// characters attribute normalisation would turn into spaces.
pub(crate) fn escape_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if is_writable(c) => out.push(c),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::dom::{Element, Node};

    #[test]
    fn libvirt_style() {
        let mut d = Element::new("domain");
        d.set_attr("type", "kvm");
        d.push_child(Element::with_text("name", "a&b<c>'\""));
        let os = d.push_child(Element::new("os"));
        os.push_child(Element::with_text("type", "hvm"))
            .set_attr("arch", "x86_64");
        os.push_child(Element::new("boot")).set_attr("dev", "hd");
        d.push_child(Element::new("devices"));
        let s = d.to_xml();
        assert_eq!(
            s,
            "<domain type='kvm'>\n  <name>a&amp;b&lt;c&gt;'\"</name>\n  <os>\n    <type arch='x86_64'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n  <devices/>\n</domain>\n"
        );
        assert_eq!(Element::parse(&s).unwrap(), d);
    }

    #[test]
    fn attribute_escaping_round_trips() {
        let mut e = Element::new("a");
        e.set_attr("v", "it's \"q\" <&>\n\tx\r");
        let s = e.to_xml();
        assert_eq!(
            s,
            "<a v='it&apos;s &quot;q&quot; &lt;&amp;&gt;&#10;&#9;x&#13;'/>\n"
        );
        assert_eq!(Element::parse(&s).unwrap(), e);
    }

    #[test]
    fn mixed_content_is_faithful() {
        let xml = "<description>Hello <b>big</b> world<!--c--></description>";
        let e = Element::parse(xml).unwrap();
        assert_eq!(e.to_xml(), format!("{xml}\n"));
    }

    #[test]
    fn comments_in_element_content_are_indented() {
        let e = Element::parse("<a><!-- hi --><b/></a>").unwrap();
        assert_eq!(e.to_xml(), "<a>\n  <!-- hi -->\n  <b/>\n</a>\n");
        assert_eq!(e.children[0], Node::Comment(" hi ".into()));
    }

    #[test]
    fn hostile_programmatic_content_still_parses() {
        let mut e = Element::new("a");
        e.children.push(Node::Comment("x--y-".into()));
        e.children.push(Node::CData("a]]>b\u{1}".into()));
        e.children.push(Node::Text("\u{0}t".into()));
        let s = e.to_xml();
        Element::parse(&s).unwrap();
    }
}
