//! What the agent's status page and headquarters' console share: one
//! stylesheet and the page around the content, server-rendered with maud
//! (which escapes every value it is given).

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// Readable on a phone at the till as on a desk; long ids and errors wrap.
pub const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:.75rem;color:#222;overflow-wrap:anywhere}
h1{font-size:1.25rem;margin:.25rem 0}h2{font-size:1.05rem;margin:1.25rem 0 .4rem}
.ok{background:#e3f6e5;border-left:.4rem solid #2e7d32}.bad{background:#fdecea;border-left:.4rem solid #c62828}
.warn{background:#fff6e0;border-left:.4rem solid #b26a00}
.box{padding:.5rem .75rem;margin:.5rem 0;border-radius:.25rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.25rem .4rem;border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:normal}
td.n{text-align:right;font-variant-numeric:tabular-nums}progress{width:100%;height:1.1rem}
tr.failing td:first-child{border-left:.3rem solid #c62828}tr.behind td:first-child{border-left:.3rem solid #b26a00}
code,.id{font-family:ui-monospace,monospace;font-size:.85em;word-break:break-all}
button{font-size:1rem;padding:.45rem 1.2rem}input{font-size:1rem;padding:.35rem;max-width:100%}
.muted{color:#666;font-size:.85rem}.err{overflow-wrap:anywhere;display:inline-block;min-width:14rem}details summary{cursor:pointer}
nav a{margin-right:1rem}
";

/// Reload a page every `seconds` from `url` (a fixed path: a page shown
/// in answer to a form post must not reload by posting nor by getting the
/// form's URL).
#[derive(Debug, Clone, Copy)]
pub struct Refresh<'a> {
    pub seconds: u32,
    pub url: &'a str,
}

/// Headers every HTML page carries: no framing by another site (a Resume
/// button cannot be clickjacked), no referrer to other sites (`no-referrer`
/// would make a browser send `Origin: null` with the page's own form posts),
/// no caching.
pub const PAGE_HEADERS: [(&str, &str); 4] = [
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
];

/// A whole page: `title`, the shared style, a reload when given (through a
/// script that holds off while a person types into a field; `<noscript>`
/// falls back to a meta refresh), `body`.
pub fn layout(title: &str, refresh: Option<Refresh<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
                @if let Some(r) = refresh {
                    noscript { meta http-equiv="refresh" content={ (r.seconds) "; url=" (r.url) }; }
                }
            }
            body {
                (body)
                @if let Some(r) = refresh {
                    // The URL goes in as JSON: a string literal, escaped.
                    script { (PreEscaped(format!(
                        "setTimeout(function(){{var f=document.activeElement;\
                         var typing=Array.prototype.some.call(document.querySelectorAll('input'),\
                         function(i){{return i.value||i===f;}});\
                         if(!typing){{location.replace({});}}}},{});",
                        serde_json::to_string(r.url).unwrap_or_default().replace('<', "\\u003c"),
                        r.seconds * 1000
                    ))) }
                }
            }
        }
    }
}
