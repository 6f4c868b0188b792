//! The Ogg page splitter the API's relay reads the host's live stream with
//! (`bus::audio::PageSplitter`), fed arbitrary bytes in arbitrary pieces, as the HTTP body
//! arrives. It must hand on whole pages, in order, exactly as they were sent (each one as long
//! as its header says), and stop at the first byte that cannot start a page.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use radio24::bus::audio::{PageSplitter, granule_position};
use radio24_fuzz::cut;

/// Fixed part of an Ogg page header.
const HEADER_LEN: usize = 27;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    cuts: Vec<u16>,
    stream: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let mut splitter = PageSplitter::new();
    let mut pages: Vec<u8> = Vec::new();
    'reading: for piece in cut(input.stream, &input.cuts) {
        splitter.push(piece);
        loop {
            match splitter.next_page() {
                Ok(Some(page)) => {
                    check_page(&page);
                    pages.extend_from_slice(&page);
                }
                Ok(None) => break,
                Err(_) => break 'reading,
            }
        }
    }
    assert!(
        input.stream.starts_with(&pages),
        "the pages are not the stream's bytes in order"
    );
});

/// A page is as long as its header says, and starts with the capture pattern.
fn check_page(page: &[u8]) {
    assert!(
        page.starts_with(b"OggS"),
        "a page without its capture pattern"
    );
    assert!(page.len() >= HEADER_LEN, "a page shorter than its header");
    let segments = usize::from(page[HEADER_LEN - 1]);
    let body: usize = page[HEADER_LEN..HEADER_LEN + segments]
        .iter()
        .map(|l| usize::from(*l))
        .sum();
    assert_eq!(page.len(), HEADER_LEN + segments + body, "a page cut wrong");
    assert!(granule_position(page).is_some());
}
