package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// goBenchResult is one line of `go test -bench` output.
type goBenchResult struct {
	Pkg     string
	Name    string // without the "Benchmark" prefix and the -N suffix
	N       int
	Metrics []goBenchMetric // in output order: ns/op, B/op, allocs/op, custom ones
}

// goBenchMetric is one "value unit" pair.
type goBenchMetric struct {
	Value float64
	Unit  string
}

// parseGoBench reads `go test -bench` output.
func parseGoBench(out string) []goBenchResult {
	var res []goBenchResult
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		r := goBenchResult{Pkg: pkg, Name: name, N: n}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			r.Metrics = append(r.Metrics, goBenchMetric{v, f[i+1]})
		}
		res = append(res, r)
	}
	return res
}

// metric returns the value of unit u, if present.
func (r goBenchResult) metric(u string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Unit == u {
			return m.Value, true
		}
	}
	return 0, false
}

// goBenchCmd is the command the micro-benchmarks run with.
func (b *bench) goBenchCmd() []string {
	return []string{"go", "test", "-p", "1", "-bench", ".", "-benchmem", "-run", "^$", "-benchtime", b.opts.goBench, "./..."}
}

// runGoBench runs the Go micro-benchmarks of every package, one package at
// a time so that they do not compete for the two cores.
func (b *bench) runGoBench(ctx context.Context) error {
	args := b.goBenchCmd()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = b.repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, tail(string(out), 20))
	}
	b.goBench = parseGoBench(string(out))
	fmt.Fprintf(os.Stderr, "bench:   %d Go benchmarks\n", len(b.goBench))
	b.note("gobench", fmt.Sprintf("`%s` (the -p 1 keeps packages from running their benchmarks at the same time on the 2 cores).", strings.Join(args, " ")))
	return nil
}

// goBenchTable renders the micro-benchmarks as Markdown.
func (b *bench) goBenchTable() string {
	if len(b.goBench) == 0 {
		return ""
	}
	var s strings.Builder
	s.WriteString("| package | benchmark | time/op | B/op | allocs/op | other |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range b.goBench {
		ns, _ := r.metric("ns/op")
		bop, _ := r.metric("B/op")
		allocs, _ := r.metric("allocs/op")
		var other []string
		for _, m := range r.Metrics {
			switch m.Unit {
			case "ns/op", "B/op", "allocs/op":
			default:
				other = append(other, strconv.FormatFloat(m.Value, 'g', 4, 64)+" "+m.Unit)
			}
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %.0f | %.0f | %s |\n", strings.TrimPrefix(r.Pkg, "mailgate/"), r.Name, nsString(ns), bop, allocs, strings.Join(other, ", "))
	}
	return s.String()
}

// nsString formats nanoseconds with a readable unit.
func nsString(ns float64) string {
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%.2f s", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}
