//! The status page: a small HTTP/1.1 server (RFC 9110, RFC 9112) on port 80,
//! embedded-style: the request head must fit a fixed buffer, the response is
//! written straight into the socket's transmit buffer, nothing is allocated.
//!
//! - `GET /` (or `/index.html`): an HTML page with the counters and the
//!   socket table, which refreshes itself every 2 seconds;
//! - `GET /stats.json`: the same as JSON;
//! - `HEAD` of either: the same headers, no body;
//! - any other path: 404; another method: 405 (with `Allow`); a malformed
//!   request (bad request line, bad header, HTTP/1.1 without `Host`): 400; a
//!   request head larger than [`HTTP_REQUEST_BUFFER`](crate::config::HTTP_REQUEST_BUFFER): 431.
//!
//! Every response closes the connection (`Connection: close`), so a client
//! holds a pool slot only for one request.

use core::fmt;

use crate::stack::{SocketInfo, View};

/// Name shown to people.
pub const NAME: &str = "status (HTTP)";

/// What a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The HTML page.
    Page,
    /// The JSON document.
    Json,
}

/// A request the server will answer with 200.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// `HEAD` (headers only) or `GET`.
    pub head_only: bool,
    /// Which document.
    pub route: Route,
}

/// An HTTP status the server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200 OK.
    Ok,
    /// 400 Bad Request: the request does not follow HTTP/1.1.
    BadRequest,
    /// 404 Not Found.
    NotFound,
    /// 405 Method Not Allowed (only GET and HEAD are).
    MethodNotAllowed,
    /// 431 Request Header Fields Too Large.
    HeadersTooLarge,
    /// 503 Service Unavailable: the page would not fit the transmit buffer.
    Unavailable,
}

impl Status {
    /// The status code.
    pub fn code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::BadRequest => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::HeadersTooLarge => 431,
            Self::Unavailable => 503,
        }
    }

    /// The reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::BadRequest => "Bad Request",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::HeadersTooLarge => "Request Header Fields Too Large",
            Self::Unavailable => "Service Unavailable",
        }
    }
}

/// The length of the request head in `buf` (through the empty line that ends
/// it), once it has all arrived. Bare LF line ends are accepted, as RFC 9112
/// section 2.2 allows, so a request typed in telnet works too.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let next = i + pos + 1;
        match &buf[next..] {
            [b'\n', ..] => return Some(next + 1),
            [b'\r', b'\n', ..] => return Some(next + 2),
            _ => i = next,
        }
    }
    None
}

/// RFC 9110 5.6.2 `tchar`: what a method or header name may contain.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses a complete request head (as delimited by [`head_len`]).
pub fn parse(head: &[u8]) -> Result<Request, Status> {
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let request_line = lines.next().ok_or(Status::BadRequest)?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return Err(Status::BadRequest),
    };
    if !is_token(method)
        || !target.starts_with(b"/")
        || target.iter().any(|&c| c <= b' ' || c == 0x7f)
    {
        return Err(Status::BadRequest);
    }
    let mut has_host = false;
    for line in lines.take_while(|l| !l.is_empty()) {
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(Status::BadRequest)?;
        let name = &line[..colon];
        if !is_token(name) {
            return Err(Status::BadRequest); // includes white space before the colon (RFC 9112 5.1)
        }
        has_host |= name.eq_ignore_ascii_case(b"host");
    }
    if http11 && !has_host {
        return Err(Status::BadRequest); // RFC 9112 3.2: a 1.1 request without Host
    }
    let head_only = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return Err(Status::MethodNotAllowed),
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    let route = match path {
        b"/" | b"/index.html" => Route::Page,
        b"/stats.json" => Route::Json,
        _ => return Err(Status::NotFound),
    };
    Ok(Request { head_only, route })
}

/// Counts what is written, to learn a body's length before sending it.
#[derive(Default)]
pub struct Counter(pub usize);

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// Writes a whole response: status line, headers, and (unless `head_only`)
/// the body produced by `body`, which is called twice: once to measure it
/// for `Content-Length`, once to write it.
pub fn respond(
    out: &mut impl fmt::Write,
    status: Status,
    content_type: &str,
    head_only: bool,
    body: impl Fn(&mut dyn fmt::Write) -> fmt::Result,
) -> fmt::Result {
    let mut len = Counter::default();
    body(&mut len)?;
    write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        status.code(),
        status.reason(),
        len.0
    )?;
    if status == Status::MethodNotAllowed {
        out.write_str("Allow: GET, HEAD\r\n")?;
    }
    out.write_str("\r\n")?;
    if !head_only {
        body(out)?;
    }
    Ok(())
}

/// The body of an error response.
pub fn error_body(status: Status) -> impl Fn(&mut dyn fmt::Write) -> fmt::Result {
    move |w| writeln!(w, "{} {}", status.code(), status.reason())
}

/// The HTML page: addresses, counters per layer, the socket table.
pub fn html(w: &mut dyn fmt::Write, view: &View<'_, '_>) -> fmt::Result {
    let a = view.addresses();
    w.write_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"2\"><title>tapstack status</title>\
         <style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}\
         td,th{border:1px solid #bbb;padding:2px 8px;text-align:left}td.n{text-align:right;font-family:monospace}\
         th{background:#eee}code{font-family:monospace}</style></head><body>\n",
    )?;
    write!(
        w,
        "<h1>tapstack</h1>\n<p>MAC <code>{}</code> &middot; IPv4 <code>{}</code> &middot; IPv6 <code>{}</code> \
         &middot; up {} s &middot; refreshes every 2 s &middot; <a href=\"/stats.json\">stats.json</a></p>\n",
        view.mac(),
        a.ipv4,
        a.ipv6,
        view.uptime_secs()
    )?;
    w.write_str("<h2>Counters</h2>\n<table><tr><th>layer</th><th>counter</th><th>in</th><th>out</th></tr>\n")?;
    for (layer, name, i, o) in view.counters().rows() {
        write!(
            w,
            "<tr><td>{layer}</td><td>{name}</td><td class=\"n\">{i}</td><td class=\"n\">"
        )?;
        if let Some(o) = o {
            write!(w, "{o}")?;
        }
        w.write_str("</td></tr>\n")?;
    }
    w.write_str(
        "</table>\n<h2>Sockets</h2>\n<table><tr><th>proto</th><th>local</th><th>remote</th><th>state</th>\
         <th>recv-q</th><th>send-q</th><th>service</th></tr>\n",
    )?;
    let mut result = Ok(());
    view.for_each_socket(|s| {
        if result.is_ok() {
            result = writeln!(
                w,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                s.protocol,
                s.local(),
                s.remote(),
                s.state(),
                s.recv_queue,
                s.send_queue,
                s.service
            );
        }
    });
    result?;
    w.write_str("</table>\n</body></html>\n")
}

/// The JSON document: the same data as the page.
pub fn json(w: &mut dyn fmt::Write, view: &View<'_, '_>) -> fmt::Result {
    let a = view.addresses();
    write!(
        w,
        "{{\"stack\":{{\"mac\":\"{}\",\"ipv4\":\"{}\",\"ipv6\":\"{}\",\"uptime_secs\":{}}},\"counters\":",
        view.mac(),
        a.ipv4,
        a.ipv6,
        view.uptime_secs()
    )?;
    view.counters().write_json(&mut Dyn(w))?;
    w.write_str(",\"sockets\":[")?;
    let mut first = true;
    let mut result = Ok(());
    view.for_each_socket(|s: &SocketInfo| {
        if result.is_ok() {
            result = write!(
                w,
                "{}{{\"protocol\":\"{}\",\"local\":\"{}\",\"remote\":\"{}\",\"state\":\"{}\",\"recv_queue\":{},\"send_queue\":{},\"service\":\"{}\",\"sockets\":{}}}",
                if first { "" } else { "," },
                s.protocol,
                s.local(),
                s.remote(),
                s.state(),
                s.recv_queue,
                s.send_queue,
                s.service,
                s.count
            );
            first = false;
        }
    });
    result?;
    w.write_str("]}\n")
}

/// `&mut dyn Write` as a sized `Write`.
struct Dyn<'a, 'b>(&'a mut (dyn fmt::Write + 'b));

impl fmt::Write for Dyn<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(s)
    }
}

/// Writes into a byte slice; fails (rather than truncating) when it is full.
pub struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceWriter<'a> {
    /// An empty writer over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// What was written.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self
            .len
            .checked_add(s.len())
            .filter(|&e| e <= self.buf.len())
            .ok_or(fmt::Error)?;
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;

    use super::*;

    fn req(head_only: bool, route: Route) -> Result<Request, Status> {
        Ok(Request { head_only, route })
    }

    #[test]
    fn head_ends_at_the_empty_line() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some(27));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY"), Some(27));
        assert_eq!(head_len(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_len(b""), None);
    }

    #[test]
    fn routes_and_methods() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: 192.168.69.1\r\n\r\n"),
            req(false, Route::Page)
        );
        assert_eq!(
            parse(b"GET /index.html?x=1 HTTP/1.1\r\nhost: a\r\n\r\n"),
            req(false, Route::Page)
        );
        assert_eq!(
            parse(b"HEAD /stats.json HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"),
            req(true, Route::Json)
        );
        assert_eq!(
            parse(b"GET /stats.json HTTP/1.0\r\n\r\n"),
            req(false, Route::Json)
        );
        assert_eq!(
            parse(b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(Status::NotFound)
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(Status::MethodNotAllowed)
        );
        assert_eq!(
            parse(b"DELETE /stats.json HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(Status::MethodNotAllowed)
        );
    }

    #[test]
    fn malformed_requests_are_400() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],             // no Host in 1.1
            b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n",      // two spaces
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",       // not HTTP/1.x
            b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", // four parts
            b"GET noslash HTTP/1.1\r\nHost: a\r\n\r\n", // not origin-form
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",       // not a token
            b"GET / HTTP/1.1\r\nHost a\r\n\r\n",        // header without colon
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",      // space before colon
            b"\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
        ] {
            assert_eq!(
                parse(bad),
                Err(Status::BadRequest),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn response_has_exact_length_and_no_body_for_head() {
        let mut get = String::new();
        respond(&mut get, Status::Ok, "text/plain", false, |w| {
            w.write_str("hello")
        })
        .unwrap();
        assert_eq!(
            get,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nhello"
        );
        let mut head = String::new();
        respond(&mut head, Status::Ok, "text/plain", true, |w| {
            w.write_str("hello")
        })
        .unwrap();
        assert_eq!(head, get.strip_suffix("hello").unwrap());
        let mut e = String::new();
        respond(
            &mut e,
            Status::MethodNotAllowed,
            "text/plain",
            false,
            error_body(Status::MethodNotAllowed),
        )
        .unwrap();
        assert!(e.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(e.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(e.ends_with("\r\n\r\n405 Method Not Allowed\n"));
    }
}
