package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// quantile returns the q-quantile (0..1) of xs by the nearest-rank method;
// NaN for no samples.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// msOf converts durations to float milliseconds.
func msOf(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// row is one line of the results table.
type row struct {
	Figure string
	Median string // median over runs (or over samples, when Per says so)
	P99    string
	Runs   string // "3 runs", "200 mails"
	Target string
	Met    string // "yes", "no", "" (no target)
}

// unit formats a value with a unit and a sensible precision.
func unit(v float64, u string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	switch {
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f %s", v, u)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f %s", v, u)
	default:
		return fmt.Sprintf("%.2f %s", v, u)
	}
}

// mib formats bytes as MiB.
func mib(b float64) string { return unit(b/(1<<20), "MiB") }

// yesNo turns a condition into the Met column.
func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
