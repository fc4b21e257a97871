//! A `genseg serve` process for the tests, and a minimal HTTP/1.1 client (one request per
//! connection), so the tests speak to the server exactly as a browser's fetch does.
#![allow(dead_code)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Server {
    pub child: Child,
    /// host:port
    pub address: String,
    pub token: String,
}

impl Server {
    /// Starts `genseg serve DATA --out PROJECT --port 0 EXTRA...` and reads the URL it prints.
    pub fn start(data: &Path, project: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_genseg"))
            .arg("serve")
            .arg(data)
            .arg("--out")
            .arg(project)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start genseg serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the URL line");
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
        let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("no URL printed: {line:?}"));
        let (address, query) = rest.split_once("/?token=").expect("a token in the URL");
        Server { child, address: address.to_string(), token: query.to_string() }
    }

    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.address, self.token)
    }

    /// One request with the token header; returns (status, headers in lower case, body).
    pub fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut all = vec![("X-Genseg-Token", self.token.as_str())];
        all.extend_from_slice(headers);
        request(&self.address, method, path, &all, body)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }
}

pub fn request(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut s = TcpStream::connect(address).expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send");
    // The server may answer (413) before reading a large body; a reset then is no failure.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a full HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked") {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

/// A TCP port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A 0/255 grey PNG of `w` x `h` with a filled square at the top left.
pub fn mask_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([if x < w / 2 && y < h / 2 { 255 } else { 0 }]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// A phantom data folder of `n` images of `size` px with masks for the first `masked`.
pub fn data_with_some_masks(dir: &Path, n: usize, size: u32, masked: usize) -> std::path::PathBuf {
    let ph = dir.join("phantom");
    genseg::data::phantom::write_dataset(&ph, n, size, 3).unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::create_dir_all(data.join("masks")).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(ph.join("images")).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for (i, name) in names.iter().enumerate() {
        std::fs::copy(ph.join("images").join(name), data.join("images").join(name)).unwrap();
        if i < masked {
            std::fs::copy(ph.join("masks").join(name), data.join("masks").join(name)).unwrap();
        }
    }
    data
}
