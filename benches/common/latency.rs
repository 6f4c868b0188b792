//! Latency samples in milliseconds and the percentiles the benchmark tables report.

/// Samples in milliseconds, sorted once they are all in.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    ms: Vec<f64>,
}

impl Latencies {
    /// Adds one sample, in milliseconds.
    pub fn push(&mut self, ms: f64) {
        self.ms.push(ms);
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: Latencies) {
        self.ms.extend(other.ms);
    }

    pub fn len(&self) -> usize {
        self.ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ms.is_empty()
    }

    /// The nearest-rank percentile `p` (0 to 1); NaN with no samples.
    pub fn percentile(&mut self, p: f64) -> f64 {
        if self.ms.is_empty() {
            return f64::NAN;
        }
        self.ms.sort_by(f64::total_cmp);
        let rank = (self.ms.len() as f64 * p).ceil() as usize;
        self.ms[rank.clamp(1, self.ms.len()) - 1]
    }

    /// "p50 / p99 / max" to one decimal, as the tables show it.
    pub fn summary(&mut self) -> String {
        format!(
            "{:.1} / {:.1} / {:.1}",
            self.percentile(0.5),
            self.percentile(0.99),
            self.percentile(1.0)
        )
    }
}
