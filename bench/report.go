package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// titles of the sections, by scenario.
var titles = map[string]string{
	"arrival": "1. Arrival latency",
	"backlog": "2. Backlog drain",
	"webhook": "3. Webhook acceptance",
	"smtp":    "4. SMTP delivery",
	"memory":  "5. Memory",
	"startup": "6. Start-up",
	"gobench": "Go micro-benchmarks",
}

// sectionOrder is the order of the report, whatever order the runs had.
var sectionOrder = []string{"arrival", "backlog", "webhook", "smtp", "memory", "startup"}

// table renders the results as a Markdown table.
func (b *bench) table() string {
	var s strings.Builder
	s.WriteString("| figure | median | p99 | samples | target | met |\n")
	s.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	for _, sec := range sectionOrder {
		rows := b.rows[sec]
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&s, "| **%s** | | | | | |\n", titles[sec])
		for _, r := range rows {
			fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s |\n", r.Figure, r.Median, r.P99, r.Runs, r.Target, r.Met)
		}
	}
	return s.String()
}

// machine describes the host from /proc.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "MemTotal:")), "%d", &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d cores (%s), %s memory, Linux %s, %s", runtime.NumCPU(), model, mem, kernel, runtime.Version())
}

// versions names the peers the figures were taken against.
func versions() string {
	var parts []string
	if out, err := exec.Command("dovecot", "--version").Output(); err == nil {
		parts = append(parts, "Dovecot "+strings.Fields(string(out))[0])
	}
	if out, err := exec.Command("postconf", "-d", "-h", "mail_version").Output(); err == nil {
		parts = append(parts, "Postfix "+strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("fetchmail", "--version").CombinedOutput(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "This is fetchmail release") {
				v := strings.Fields(strings.TrimPrefix(line, "This is fetchmail release"))
				if len(v) > 0 {
					parts = append(parts, "fetchmail "+strings.SplitN(v[0], "+", 2)[0])
				}
			}
		}
	}
	return strings.Join(parts, ", ")
}

// command is the command line of this run, as typed.
func command() string {
	args := append([]string{"go", "run", "./bench"}, os.Args[1:]...)
	return strings.Join(args, " ")
}

// markdown renders BENCHMARKS.md: the table, the notes, the Go
// micro-benchmarks and the analysis (analysis.md in bench/, kept by hand).
func (b *bench) markdown(table string) string {
	var s strings.Builder
	s.WriteString("# mailgate benchmarks\n\n")
	s.WriteString("Written by `make bench` (bench/main.go); the analysis sections at the end come from\n")
	s.WriteString("bench/analysis.md. Do not edit the figures by hand: run the benchmarks again.\n\n")
	fmt.Fprintf(&s, "- date: %s (took %s)\n", b.start.UTC().Format("2006-01-02 15:04 MST"), time.Since(b.start).Round(time.Second))
	fmt.Fprintf(&s, "- machine: %s\n", machine())
	if v := versions(); v != "" {
		fmt.Fprintf(&s, "- peers: %s\n", v)
	}
	fmt.Fprintf(&s, "- command: `%s` (as root, from the repository root; `make bench` runs it)\n", command())
	fmt.Fprintf(&s, "- load average (1, 5, 15 min) at the start: %s; at the end: %s (other work on the machine skews the figures)\n", b.loadStart, loadavg())
	if b.opts.mailgate != "" {
		fmt.Fprintf(&s, "- mailgate binary: `%s` (given with -mailgate, not built from this tree)\n", b.opts.mailgate)
	}
	if b.opts.quick {
		s.WriteString("- **-quick run: fewer mails and runs than the full benchmark; not comparable**\n")
	}
	s.WriteString("\nEverything runs on this one machine: the load generators, Dovecot, Postfix and the fake\n")
	s.WriteString("Userlike share the cores with mailgate. \"median\" is the median over the runs (or over\n")
	s.WriteString("the samples of one run where the samples column says mails or requests), \"p99\" the 99th\n")
	s.WriteString("percentile of the samples.\n\n")
	s.WriteString("## Results\n\n")
	s.WriteString(table)
	for _, sec := range append(sectionOrder, "gobench") {
		notes := b.notes[sec]
		extra := ""
		if sec == "gobench" {
			extra = b.goBenchTable()
		}
		if len(notes) == 0 && extra == "" {
			continue
		}
		fmt.Fprintf(&s, "\n### %s\n\n", titles[sec])
		for _, n := range notes {
			fmt.Fprintf(&s, "- %s\n", n)
		}
		if extra != "" {
			s.WriteString("\n" + extra)
		}
	}
	if a, err := os.ReadFile(b.repo + "/bench/analysis.md"); err == nil {
		s.WriteString("\n")
		s.Write(a)
	}
	return s.String()
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
