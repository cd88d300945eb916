//! Lexical similarity: the built-in measure behind deduplication and routing.
//!
//! Text becomes a set of normalised words (lower case, split on anything that is not a
//! letter or digit, common English stop words dropped, plurals and British `-ise`
//! spellings folded), and two texts are as similar as the Jaccard index of their sets.
//! Cheap, deterministic and explainable; a router plugin's `similarity` (or, later, an
//! embedding model) replaces it where meaning matters more than wording.
//!
//! [`DedupIndex`] finds every earlier text at or above a threshold without comparing
//! against all of them: a set `A` can only reach Jaccard `t` with a set `B` if they share
//! one of `A`'s `|A| − ⌈t·|A|⌉ + 1` rarest words (the prefix filter of set-similarity
//! joins), so only the postings of those few words are examined.

use std::collections::BTreeSet;
use std::hash::BuildHasher;

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "in", "is", "it", "its",
    "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with",
];

/// The normalised word set of `text`.
pub(crate) fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(fold)
        .collect()
}

/// Fold simple inflections so "routes"/"route", "policies"/"policy",
/// "cookies"/"cookie" and "optimise"/"optimize" meet ("-ies" and "-ie" both fold to
/// "-y").
fn fold(mut w: String) -> String {
    if w.len() > 4 && w.ends_with("ies") {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if w.len() > 3 && w.ends_with("ie") {
        w.truncate(w.len() - 2);
        w.push('y');
    } else if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
        w.pop();
    }
    if let Some(stem) = w.strip_suffix("ise") {
        w = format!("{stem}ize");
    } else if let Some(stem) = w.strip_suffix("isation") {
        w = format!("{stem}ization");
    }
    w
}

/// The Jaccard index of two word sets (1.0 for two empty sets).
pub(crate) fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let common = a.intersection(b).count();
    common as f64 / (a.len() + b.len() - common) as f64
}

/// Cosine similarity of two vectors (0 when either is empty or their lengths differ).
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Jaccard similarity of two texts: the definition the index is tested against.
#[cfg(test)]
fn similarity(a: &str, b: &str) -> f64 {
    jaccard(&words(a), &words(b))
}

/// An inverted index of texts in one scope (a workflow's phase), for finding
/// near-duplicates at a fixed threshold.
///
/// A run indexes every work item's description (12,480 at the cascade's N = 10,000), so
/// the index is a few flat arrays: each word is stored once, as text in one string and as
/// a number elsewhere; an entry is its key and a run of sorted word numbers in one list;
/// a word's first entry is kept in a flat list, and only words found in several entries
/// have a list of the others. A description's one unusual word ("i988") then costs a
/// dozen bytes, not a map slot, a string, a list and an allocation each (144 bytes an
/// entry before).
///
/// A run that goes on for weeks must not grow its index with every item it ever saw:
/// [`DedupIndex::keep`] rebuilds it from the entries a caller still wants (the scheduler
/// keeps open work and a window of the newest), dropping the words only the others used.
/// Entries are numbered in the order they were added, and the numbers survive a rebuild,
/// so "the entries added since" stays a question the index can answer.
#[derive(Debug)]
pub(crate) struct DedupIndex<K = String> {
    /// Per entry: its key, where its word numbers end in `entry_words`, and its number
    /// in the order entries were added.
    entries: Vec<(K, u32, u64)>,
    /// Entries ever added, those dropped by [`DedupIndex::keep`] included.
    added: u64,
    /// Entries the last [`DedupIndex::keep`] kept.
    kept: usize,
    entry_words: Vec<u32>,
    /// Every word's text, one after another; a word's text ends at `word_ends[word]`.
    word_text: String,
    word_ends: Vec<u32>,
    /// Word numbers, hashed by their text.
    vocabulary: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// Per word: the first entry it appears in.
    first_entry: Vec<u32>,
    /// Per word found in more than one entry: the later entries.
    more_entries: std::collections::HashMap<u32, Vec<u32>, foldhash::fast::RandomState>,
}

impl<K> Default for DedupIndex<K> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            added: 0,
            kept: 0,
            entry_words: Vec::new(),
            word_text: String::new(),
            word_ends: Vec::new(),
            vocabulary: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            first_entry: Vec::new(),
            more_entries: Default::default(),
        }
    }
}

/// Size of the intersection of two sorted, duplicate-free slices.
fn common(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

impl<K> DedupIndex<K> {
    /// The text of word number `word`.
    fn word(&self, word: u32) -> &str {
        word_in(&self.word_text, &self.word_ends, word)
    }

    /// The number of `word`, if it was ever indexed.
    fn number(&self, word: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(word);
        self.vocabulary
            .find(hash, |&w| self.word(w) == word)
            .copied()
    }

    /// The number of `word`, numbering it if it is new.
    fn number_or_add(&mut self, word: &str) -> u32 {
        if let Some(w) = self.number(word) {
            return w;
        }
        let w = index_u32(self.word_ends.len());
        self.word_text.push_str(word);
        self.word_ends.push(index_u32(self.word_text.len()));
        self.first_entry.push(u32::MAX);
        let (text, ends, hasher) = (&self.word_text, &self.word_ends, &self.hasher);
        self.vocabulary
            .insert_unique(hasher.hash_one(word), w, |&v| {
                hasher.hash_one(word_in(text, ends, v))
            });
        w
    }

    /// The entries word number `word` appears in, oldest first.
    fn entries_of(&self, word: u32) -> impl Iterator<Item = u32> + '_ {
        let first = self.first_entry[word as usize];
        (first != u32::MAX)
            .then_some(first)
            .into_iter()
            .chain(self.more_entries.get(&word).into_iter().flatten().copied())
    }

    /// How many entries word number `word` appears in.
    fn frequency(&self, word: u32) -> usize {
        usize::from(self.first_entry[word as usize] != u32::MAX)
            + self.more_entries.get(&word).map_or(0, Vec::len)
    }

    /// The sorted word numbers of entry `i`.
    fn words_of(&self, i: usize) -> &[u32] {
        let end = self.entries[i].1 as usize;
        let start = if i == 0 {
            0
        } else {
            self.entries[i - 1].1 as usize
        };
        &self.entry_words[start..end]
    }
}

/// Word number `word` of the words concatenated in `text`, the `n`th ending at `ends[n]`.
fn word_in<'t>(text: &'t str, ends: &[u32], word: u32) -> &'t str {
    let end = ends[word as usize] as usize;
    let start = match word {
        0 => 0,
        w => ends[w as usize - 1] as usize,
    };
    &text[start..end]
}

/// `n` as a `u32`: an index has fewer than 2^32 entries, words and bytes of words.
fn index_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a deduplication index holds fewer than 2^32 items")
}

impl<K: Clone> DedupIndex<K> {
    /// Add `text` under `key`.
    pub(crate) fn insert(&mut self, key: K, text: &str) {
        let ordinal = self.added;
        self.add(key, ordinal, words(text).iter().map(String::as_str));
    }

    /// Add an entry of normalised `words` under `key`, numbered `ordinal`.
    fn add<'w>(&mut self, key: K, ordinal: u64, words: impl Iterator<Item = &'w str>) {
        let n = index_u32(self.entries.len());
        let mut ids: Vec<u32> = words.map(|w| self.number_or_add(w)).collect();
        ids.sort_unstable();
        for &w in &ids {
            let first = &mut self.first_entry[w as usize];
            if *first == u32::MAX {
                *first = n;
            } else {
                self.more_entries.entry(w).or_default().push(n);
            }
        }
        self.entry_words.extend_from_slice(&ids);
        self.entries
            .push((key, index_u32(self.entry_words.len()), ordinal));
        self.added = self.added.max(ordinal + 1);
    }

    /// How many texts are indexed.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many texts were ever added, those [`DedupIndex::keep`] dropped included.
    pub(crate) fn added(&self) -> u64 {
        self.added
    }

    /// The keys indexed, oldest first.
    pub(crate) fn keys(&self) -> impl DoubleEndedIterator<Item = &K> {
        self.entries.iter().map(|(k, _, _)| k)
    }

    /// The keys of the texts added after the first `added` ones, oldest first.
    pub(crate) fn keys_since(&self, added: u64) -> impl Iterator<Item = &K> {
        let from = self.entries.partition_point(|(_, _, n)| *n < added);
        self.entries[from..].iter().map(|(k, _, _)| k)
    }

    /// How many entries the last [`DedupIndex::keep`] kept (0 before the first).
    pub(crate) fn kept(&self) -> usize {
        self.kept
    }

    /// Rebuild the index from the entries `keep` says to keep (it is asked with each
    /// entry's key and how many entries were added after it), oldest first. Words that
    /// only dropped entries used are dropped too; what [`DedupIndex::similar`] finds among
    /// the kept entries does not change.
    pub(crate) fn keep(&mut self, mut keep: impl FnMut(&K, u64) -> bool) {
        let mut kept = DedupIndex::default();
        for (i, (key, _, ordinal)) in self.entries.iter().enumerate() {
            if keep(key, self.added - 1 - ordinal) {
                let words = self.words_of(i).iter().map(|&w| self.word(w));
                kept.add(key.clone(), *ordinal, words);
            }
        }
        kept.added = self.added;
        kept.kept = kept.entries.len();
        *self = kept;
    }

    /// Keys of indexed texts whose similarity with `text` is at least `threshold`, most
    /// similar first (ties: oldest first).
    pub(crate) fn similar(&self, text: &str, threshold: f64) -> Vec<(K, f64)> {
        let set = words(text);
        // Words never indexed match nothing, but count towards the union.
        let mut known: Vec<(usize, &str, u32)> = set
            .iter()
            .filter_map(|w| {
                let id = self.number(w)?;
                Some((self.frequency(id), w.as_str(), id))
            })
            .collect();
        let mut ids: Vec<u32> = known.iter().map(|(_, _, id)| *id).collect();
        ids.sort_unstable();
        // Rarest first (ties by the word, so the order never depends on numbering).
        known.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        // A hair below, so rounding can only widen the prefix, never miss a match.
        let need = (threshold * set.len() as f64 - 1e-9).ceil() as usize;
        let prefix = (set.len() + 1).saturating_sub(need.max(1)).max(1);
        let mut seen = std::collections::HashSet::new();
        let mut found = Vec::new();
        // The prefix is taken over all of the text's words, rarest first; a word never
        // indexed has no postings and is the rarest of all.
        let unknown = set.len() - known.len();
        for &(_, _, id) in known.iter().take(prefix.saturating_sub(unknown)) {
            for i in self.entries_of(id) {
                if !seen.insert(i) {
                    continue;
                }
                let other = self.words_of(i as usize);
                let shared = common(&ids, other);
                let score = shared as f64 / (set.len() + other.len() - shared) as f64;
                if score >= threshold {
                    found.push((i, self.entries[i as usize].0.clone(), score));
                }
            }
        }
        if set.is_empty() {
            // Only an empty text can match an empty text.
            for i in 0..self.entries.len() {
                if self.words_of(i).is_empty() {
                    found.push((index_u32(i), self.entries[i].0.clone(), 1.0));
                }
            }
        }
        found.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        found.into_iter().map(|(_, k, s)| (k, s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fold_case_plurals_spelling_and_stop_words() {
        let w = words("The Caching pattern could optimise ALL API routes!");
        let expected: BTreeSet<String> = [
            "caching", "pattern", "could", "optimize", "all", "api", "route",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(w, expected);
    }

    #[test]
    fn plurals_in_ies_meet_their_singular_in_y_or_ie() {
        assert_eq!(similarity("cookies", "cookie"), 1.0);
        assert_eq!(similarity("policies", "policy"), 1.0);
        assert_eq!(similarity("movies", "movie"), 1.0);
    }

    #[test]
    fn jaccard_is_shared_over_union() {
        assert_eq!(similarity("a b c", "a b c"), 1.0);
        assert!((similarity("red green blue", "red green yellow") - 0.5).abs() < 1e-9);
        assert_eq!(similarity("red", "blue"), 0.0);
    }

    #[test]
    fn a_word_found_in_one_entry_keeps_no_list_of_entries() {
        let mut index = DedupIndex::default();
        for i in 0..1000 {
            index.insert(i, &format!("follow-up g1-i{i}"));
        }
        // "follow", "up" and "g1" are in every entry; each "iN" in one.
        assert_eq!(index.word_ends.len(), 1003);
        assert_eq!(index.more_entries.len(), 3);
        assert_eq!(
            index.similar("follow-up g1-i7", 1.0),
            vec![(7, 1.0)],
            "found through its rare word"
        );
        assert_eq!(index.similar("follow-up g1", 0.75).len(), 1000);
    }

    #[test]
    fn keeping_some_entries_drops_the_others_and_their_words_and_keeps_their_numbers() {
        let mut index = DedupIndex::default();
        for i in 0..100u32 {
            index.insert(i, &format!("follow-up g1-i{i}"));
        }
        index.keep(|k, newer| *k % 10 == 0 || newer < 5);
        // 0, 10, …, 90, and the five newest, 95 to 99.
        assert_eq!(index.len(), 15);
        assert_eq!(
            index.word_ends.len(),
            3 + 15,
            "the dropped entries' words went"
        );
        assert_eq!(index.similar("follow-up g1-i7", 1.0), vec![]);
        assert_eq!(index.similar("follow-up g1-i20", 1.0), vec![(20, 1.0)]);
        assert_eq!(index.similar("follow-up g1", 0.75).len(), 15);
        assert_eq!(index.added(), 100);
        assert_eq!(index.kept(), 15);
        let since = |index: &DedupIndex<u32>, n| index.keys_since(n).copied().collect::<Vec<_>>();
        assert_eq!(since(&index, 89), [90, 95, 96, 97, 98, 99]);
        index.insert(100, "follow-up g1-i100");
        assert_eq!(since(&index, 100), [100]);
        assert_eq!(index.similar("follow-up g1-i100", 1.0), vec![(100, 1.0)]);
    }

    #[test]
    fn the_index_finds_exactly_what_a_full_scan_finds() {
        let texts = [
            "caching pattern could optimize all API routes",
            "caching pattern could optimise all API route",
            "item 1",
            "item 2",
            "follow-up 3 of generation 2",
            "follow-up 3 of generation 1",
            "bug fix needed in OAuth callback",
            "",
            "OAuth callback bug fix needed",
        ];
        let mut index = DedupIndex::default();
        for (i, t) in texts.iter().enumerate() {
            index.insert(i.to_string(), t);
        }
        for threshold in [0.3, 0.5, 0.8, 1.0] {
            for probe in texts
                .iter()
                .chain(["item", "caching API routes pattern"].iter())
            {
                let mut fast: Vec<String> = index
                    .similar(probe, threshold)
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                let mut slow: Vec<String> = texts
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| similarity(probe, t) >= threshold)
                    .map(|(i, _)| i.to_string())
                    .collect();
                fast.sort();
                slow.sort();
                assert_eq!(fast, slow, "probe {probe:?} at {threshold}");
            }
        }
    }
}
