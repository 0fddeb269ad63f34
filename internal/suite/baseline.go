package suite

import "fmt"

// Compare adds a regression failure to every case of r whose record/run
// ratio or log rate is above the same case's figure in base times the
// case's threshold. Cases missing from base, and figures that are zero in
// base (not measured: the case failed there), are not compared; earlier
// regression failures of r (a results.json compared again) are replaced.
func Compare(r, base *Results) {
	for _, c := range r.Cases {
		kept := c.Failures[:0]
		for _, f := range c.Failures {
			if f.Kind != "regression" {
				kept = append(kept, f)
			}
		}
		c.Failures = kept
	}
	old := map[string]*Case{}
	for _, c := range base.Cases {
		old[c.Name] = c
	}
	for _, c := range r.Cases {
		b, ok := old[c.Name]
		if !ok || len(c.Failures) > 0 || c.RunSeconds == 0 {
			continue
		}
		for _, f := range []struct {
			name            string
			cur, was, limit float64
		}{
			{"record_run_ratio", c.RecordRunRatio, b.RecordRunRatio, c.Thresholds.RecordRunRatio},
			{"log_rate", c.LogRate, b.LogRate, c.Thresholds.LogRate},
		} {
			if f.was > 0 && f.cur > f.was*f.limit {
				c.Failures = append(c.Failures, Failure{Figure: f.name, Kind: "regression",
					Message: fmt.Sprintf("%s regressed: %.4g against the baseline's %.4g (%.2fx; the threshold is %.2fx)",
						f.name, f.cur, f.was, f.cur/f.was, f.limit)})
			}
		}
	}
}
