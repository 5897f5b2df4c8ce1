//! Reading Prometheus text: the services' counters the tests assert on.

/// The sum of the samples `name` in Prometheus text `text` whose labels include every
/// `labels` pair.
pub(crate) fn sample_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (sample, label_text) = series
                .split_once('{')
                .map_or((series, ""), |(n, l)| (n, l.trim_end_matches('}')));
            let wanted = sample == name
                && labels
                    .iter()
                    .all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_picked_by_name_and_labels() {
        let text = "# TYPE tessera_x counter\n\
            tessera_x_total{channel=\"email\",outcome=\"delivered\",service=\"n\"} 3\n\
            tessera_x_total{channel=\"sms\",outcome=\"delivered\",service=\"n\"} 2\n\
            tessera_x_total{channel=\"email\",outcome=\"transient\",service=\"n\"} 7\n\
            tessera_y_total 4\n";
        let delivered = [("outcome", "delivered")];
        assert_eq!(sample_sum(text, "tessera_x_total", &delivered), Some(5.0));
        let email = [("channel", "email"), ("outcome", "delivered")];
        assert_eq!(sample_sum(text, "tessera_x_total", &email), Some(3.0));
        assert_eq!(sample_sum(text, "tessera_y_total", &[]), Some(4.0));
        assert_eq!(sample_sum(text, "tessera_z_total", &[]), None);
    }
}
