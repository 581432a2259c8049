//! Which worker reads which partition: decided here, and only here.

/// Returns the partitions of `partitions` that worker `worker` of `peers` reads.
///
/// The partitions are sorted and dealt round-robin over *all* workers of *all*
/// processes (timely's global worker index, `0..peers`): the partition at sorted
/// position `i` goes to worker `i % peers`. Every partition has exactly one reader,
/// every worker computes the same answer without talking to the others, and the
/// assignment is stable for a given partition count and worker count. Workers beyond
/// the partition count read nothing, and still advance their epochs.
///
/// # Examples
/// ```
/// use tidewatch_engine::assign::partitions_for_worker;
/// // four partitions over three workers: an uneven split
/// assert_eq!(partitions_for_worker(&[0, 1, 2, 3], 0, 3), vec![0, 3]);
/// assert_eq!(partitions_for_worker(&[0, 1, 2, 3], 1, 3), vec![1]);
/// assert_eq!(partitions_for_worker(&[0, 1, 2, 3], 2, 3), vec![2]);
/// // more workers than partitions
/// assert!(partitions_for_worker(&[0, 1], 3, 4).is_empty());
/// ```
pub fn partitions_for_worker(partitions: &[i32], worker: usize, peers: usize) -> Vec<i32> {
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
        .into_iter()
        .enumerate()
        .filter(|(i, _)| peers > 0 && i % peers == worker)
        .map(|(_, p)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::partitions_for_worker;

    #[test]
    fn every_partition_has_exactly_one_reader() {
        for n in 1..12 {
            let partitions: Vec<i32> = (0..n).collect();
            for peers in 1..9 {
                let mut seen: Vec<i32> =
                    (0..peers).flat_map(|w| partitions_for_worker(&partitions, w, peers)).collect();
                seen.sort_unstable();
                assert_eq!(seen, partitions, "n={n} peers={peers}");
            }
        }
    }

    #[test]
    fn order_of_the_listing_does_not_matter() {
        assert_eq!(partitions_for_worker(&[3, 1, 2, 0], 0, 2), partitions_for_worker(&[0, 1, 2, 3], 0, 2));
    }
}
