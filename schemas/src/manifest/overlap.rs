//! Finding the patterns of a subscription that cover one another, in time linear in their
//! number.
//!
//! Comparing every pair took 30 to 45 seconds for 10 000 patterns, in the command line, at
//! each worker's start and in the dispatcher's registry read. Here the distinct patterns go
//! into a trie over their tokens, and for each one the patterns that cover it are looked up.
//! A pattern that covers `p` has, at each position, `p`'s token or `*`, or ends in `>`, so
//! the look-up follows at most two branches per token: with at most
//! [`MAX_TYPE_TOKENS`](crate::MAX_TYPE_TOKENS) tokens it visits a bounded number of nodes
//! (see [`MAX_VISITS_PER_PATTERN`]), however many patterns there are.

use std::collections::HashMap;

use super::pattern::EventPattern;
use crate::name::MAX_TYPE_TOKENS;

/// The most trie nodes one look-up visits: two branches per token over
/// [`MAX_TYPE_TOKENS`](crate::MAX_TYPE_TOKENS) tokens (a full binary tree of that depth).
pub(super) const MAX_VISITS_PER_PATTERN: usize = (1 << (MAX_TYPE_TOKENS + 1)) - 1;

/// For each pattern of `patterns` (in order), the position of the first *earlier* pattern that
/// covers it or that it covers, equal patterns excepted (they are duplicates, reported as
/// such): what comparing each pattern with every earlier one finds, without doing so.
///
/// Also returns how many trie nodes the look-ups visited, so that a test can hold the work to
/// a linear bound.
pub(super) fn first_overlaps(patterns: &[&EventPattern]) -> (Vec<Option<usize>>, usize) {
    // Distinct patterns: each pattern's id, and each id's first position. Equal patterns share
    // everything below.
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(patterns.len());
    let mut distinct: Vec<usize> = Vec::new();
    let of: Vec<usize> = patterns
        .iter()
        .enumerate()
        .map(|(position, pattern)| {
            *ids.entry(pattern.as_str()).or_insert_with(|| {
                distinct.push(position);
                distinct.len() - 1
            })
        })
        .collect();

    let mut trie = Trie::default();
    for (id, &position) in distinct.iter().enumerate() {
        trie.insert(patterns[position], id);
    }

    // For each distinct pattern, the first position of any other pattern it overlaps.
    let mut earliest = vec![usize::MAX; distinct.len()];
    let mut visits = 0;
    let mut coverers = Vec::new();
    for (id, &position) in distinct.iter().enumerate() {
        coverers.clear();
        visits += trie.coverers(patterns[position], &mut coverers);
        for &other in &coverers {
            if other != id {
                // `other` covers `id`: the overlap counts for both.
                earliest[id] = earliest[id].min(distinct[other]);
                earliest[other] = earliest[other].min(position);
            }
        }
    }

    let found = of
        .iter()
        .enumerate()
        .map(|(position, &id)| {
            let overlapped = earliest[id];
            (overlapped < position).then_some(overlapped)
        })
        .collect();
    (found, visits)
}

/// A trie of patterns over their tokens; wildcards are tokens like any other here.
#[derive(Debug, Default)]
struct Trie<'a> {
    /// The child of a node (0 is the root) along a token.
    edges: HashMap<(usize, &'a str), usize>,
    /// The distinct pattern ending at a node, if any, by node.
    ends: Vec<Option<usize>>,
}

impl<'a> Trie<'a> {
    fn insert(&mut self, pattern: &'a EventPattern, id: usize) {
        if self.ends.is_empty() {
            self.ends.push(None);
        }
        let mut node = 0;
        for token in pattern.tokens() {
            let next = self.ends.len();
            node = *self.edges.entry((node, token)).or_insert(next);
            if node == next {
                self.ends.push(None);
            }
        }
        self.ends[node] = Some(id);
    }

    /// Pushes onto `found` every pattern in the trie that covers `pattern` (itself included),
    /// and returns how many nodes it visited.
    fn coverers(&self, pattern: &EventPattern, found: &mut Vec<usize>) -> usize {
        let mut tokens = [""; MAX_TYPE_TOKENS];
        let mut count = 0;
        for token in pattern.tokens().take(MAX_TYPE_TOKENS) {
            tokens[count] = token;
            count += 1;
        }
        // Depth-first, on a stack of (node, tokens consumed): bounded by the pattern's length.
        let mut stack = [(0usize, 0usize); MAX_VISITS_PER_PATTERN];
        let mut top = 0;
        let mut visits = 0;
        if !self.ends.is_empty() {
            stack[0] = (0, 0);
            top = 1;
        }
        while top > 0 {
            top -= 1;
            let (node, consumed) = stack[top];
            visits += 1;
            if consumed == count {
                if let Some(id) = self.ends[node] {
                    found.push(id);
                }
                continue;
            }
            // `>` covers every rest of one token or more, `>` itself included.
            if let Some(&rest) = self.edges.get(&(node, ">")) {
                if let Some(id) = self.ends[rest] {
                    found.push(id);
                }
            }
            let token = tokens[consumed];
            // `*` covers one literal token or `*`; a literal covers only itself; `>` is
            // covered only by `>`, handled above.
            let mut follow = |key: &str| {
                if let Some(&child) = self.edges.get(&(node, key)) {
                    stack[top] = (child, consumed + 1);
                    top += 1;
                }
            };
            match token {
                ">" => {}
                "*" => follow("*"),
                literal => {
                    follow(literal);
                    follow("*");
                }
            }
        }
        visits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the pairwise comparison found, as the reference.
    fn pairwise(patterns: &[&EventPattern]) -> Vec<Option<usize>> {
        patterns
            .iter()
            .enumerate()
            .map(|(position, pattern)| {
                patterns[..position].iter().position(|earlier| {
                    earlier != pattern && (earlier.covers(pattern) || pattern.covers(earlier))
                })
            })
            .collect()
    }

    fn parse(list: &[&str]) -> Vec<EventPattern> {
        list.iter()
            .map(|p| EventPattern::new(*p).unwrap())
            .collect()
    }

    #[test]
    fn finds_what_comparing_every_pair_finds() {
        let cases: &[&[&str]] = &[
            &["order.created", "order.*"],
            &["order.*", "order.created"],
            &["a.b", "a.*", "*.b"],
            &["a.b", "a.*", "a.*", "a.>"],
            &["a.*", "a.*", "a.b"],
            &["order.*", "*.created", "invoice.>", "invoice.paid.late"],
            &[">", "a", "a.b.c.d.e.f.g.h"],
            &["*", "a", "a.b"],
            &["a.>", "a.*.>", "a.*.b", "a.c.*", "a.c.b"],
            &["*.*.*", "a.b.c", "a.>", "x.y"],
            &["a", "b", "c", "a"],
            &["a.*.c", "a.b.*", "*.b.c", "a.b.c"],
        ];
        for list in cases {
            let patterns = parse(list);
            let refs: Vec<&EventPattern> = patterns.iter().collect();
            assert_eq!(first_overlaps(&refs).0, pairwise(&refs), "{list:?}");
        }
    }

    #[test]
    fn agrees_with_every_pair_over_all_small_patterns() {
        // Every pattern of up to three tokens over `a`, `b`, `*` and a final `>`, in one list:
        // each possible kind of pair occurs.
        let tokens = ["a", "b", "*"];
        let mut all = vec![">".to_owned()];
        let mut level: Vec<String> = vec![String::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for prefix in &level {
                for token in tokens {
                    let p = if prefix.is_empty() {
                        token.to_owned()
                    } else {
                        format!("{prefix}.{token}")
                    };
                    all.push(format!("{p}.>"));
                    all.push(p.clone());
                    next.push(p);
                }
            }
            level = next;
        }
        let patterns = parse(&all.iter().map(String::as_str).collect::<Vec<_>>());
        let refs: Vec<&EventPattern> = patterns.iter().collect();
        assert_eq!(first_overlaps(&refs).0, pairwise(&refs));
        let reversed: Vec<&EventPattern> = refs.iter().rev().copied().collect();
        assert_eq!(first_overlaps(&reversed).0, pairwise(&reversed));
    }

    #[test]
    fn the_work_is_linear_in_the_number_of_patterns() {
        // 10 000 patterns sharing prefixes and wildcards, the shape that made the pairwise
        // check slow: every look-up stays within its constant bound.
        let list: Vec<String> = (0..10_000)
            .map(|i| match i % 4 {
                0 => format!("t{i}.created"),
                1 => format!("t{i}.*.done"),
                2 => format!("*.x{i}.y"),
                _ => format!("svc.t{i}.>"),
            })
            .collect();
        let patterns = parse(&list.iter().map(String::as_str).collect::<Vec<_>>());
        let refs: Vec<&EventPattern> = patterns.iter().collect();
        let (found, visits) = first_overlaps(&refs);
        assert!(found.iter().all(Option::is_none));
        assert!(
            visits <= refs.len() * MAX_VISITS_PER_PATTERN,
            "{visits} visits"
        );
        // In practice far fewer: a handful per pattern, against 50 million pairs.
        assert!(visits < refs.len() * 8, "{visits} visits");
    }
}
