// Package grafana_test checks contrib/grafana/mailgate.json: that it is a
// well-formed Grafana dashboard and that every PromQL expression in it uses
// only metrics, labels and functions that exist, the metrics being the
// ones package metrics actually registers.
package grafana_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"mailgate/metrics"
)

const dashboardPath = "mailgate.json"

// dashboard is the part of the Grafana dashboard model this test checks.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

func loadDashboard(t *testing.T) (dashboard, []byte) {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatalf("read dashboard: %v", err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decode %s: %v", dashboardPath, err)
	}
	if dec.More() {
		t.Fatalf("%s: trailing data after the dashboard object", dashboardPath)
	}
	return d, raw
}

// allPanels returns the panels of d, those inside collapsed rows included.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// catalog is what package metrics registers: label names by series name,
// with a histogram's _bucket, _sum and _count series listed separately.
type catalog map[string]map[string]bool

// registered gathers a metrics.Metrics with every kind of series created
// and returns its catalog.
func registered(t *testing.T) catalog {
	t.Helper()
	m := metrics.New()
	m.InitChannel("support")
	m.SkipReason("support", "auto_reply")
	m.SetStateFunc(func() []metrics.ChannelState {
		return []metrics.ChannelState{{Channel: "support", LastSync: time.Now()}}
	})
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	c := catalog{}
	add := func(name string, labels map[string]bool) {
		if c[name] == nil {
			c[name] = map[string]bool{}
		}
		for l := range labels {
			c[name][l] = true
		}
	}
	for _, f := range families {
		labels := map[string]bool{}
		for _, s := range f.GetMetric() {
			for _, lp := range s.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			add(f.GetName()+"_sum", labels)
			add(f.GetName()+"_count", labels)
			labels["le"] = true
			add(f.GetName()+"_bucket", labels)
		case dto.MetricType_SUMMARY:
			add(f.GetName()+"_sum", labels)
			add(f.GetName()+"_count", labels)
			labels["quantile"] = true
			add(f.GetName(), labels)
		default:
			add(f.GetName(), labels)
		}
	}
	return c
}

// targetLabels are added by Prometheus when it scrapes.
var targetLabels = []string{"job", "instance"}

// checkExpr reports what in expr is unknown to c. The labels in extra are
// checked as if expr grouped by them.
func checkExpr(c catalog, expr string, extra ...string) []string {
	refs, err := parsePromQL(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	allowed := map[string]bool{"__name__": true}
	for _, l := range targetLabels {
		allowed[l] = true
	}
	if len(refs.metrics) == 0 {
		problems = append(problems, "references no metric")
	}
	for _, name := range refs.metrics {
		labels, ok := c[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not registered by metrics.New()", name))
			continue
		}
		for l := range labels {
			allowed[l] = true
		}
	}
	for _, l := range append(refs.labels, extra...) {
		if !allowed[l] {
			problems = append(problems, fmt.Sprintf("label %q is not a label of %v", l, refs.metrics))
		}
	}
	for _, f := range refs.functions {
		if !promqlFunctions[f] {
			problems = append(problems, fmt.Sprintf("unknown function %s", f))
		}
	}
	return problems
}

func TestDashboardMetricsExist(t *testing.T) {
	d, _ := loadDashboard(t)
	c := registered(t)
	exprs := 0
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			exprs++
			for _, problem := range checkExpr(c, tg.Expr) {
				t.Errorf("panel %q, target %s: %s\n\texpr: %s", p.Title, tg.RefID, problem, tg.Expr)
			}
		}
	}
	if exprs == 0 {
		t.Fatal("no PromQL expression in the dashboard")
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := variableQuery(t, v)
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q)
			continue
		}
		for _, problem := range checkExpr(c, m[1], m[2]) {
			t.Errorf("variable %s: %s\n\tquery: %s", v.Name, problem, q)
		}
	}
}

// TestDashboardCoversMetrics checks that the panels the dashboard is for
// are there: each of these series appears in some expression.
func TestDashboardCoversMetrics(t *testing.T) {
	_, raw := loadDashboard(t)
	for _, name := range []string{
		"mailgate_inbound_messages_total",
		"mailgate_outbound_messages_total",
		"mailgate_inbound_delivery_seconds_bucket",
		"mailgate_outbound_delivery_seconds_bucket",
		"mailgate_queue_depth",
		"mailgate_imap_connected",
		"mailgate_dead_letters",
	} {
		if !regexp.MustCompile(`\b` + name + `\b`).Match(raw) {
			t.Errorf("no panel uses %s", name)
		}
	}
}

func TestDashboardStructure(t *testing.T) {
	d, _ := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both must be set", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want 36-41", d.SchemaVersion)
	}
	hasDatasourceVar := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" {
			hasDatasourceVar = true
		}
	}
	if !hasDatasourceVar {
		t.Error(`no "datasource" variable of type datasource; panels refer to ${datasource}`)
	}
	ids := map[int]string{}
	for _, p := range allPanels(d.Panels) {
		if other, dup := ids[p.ID]; dup || p.ID <= 0 {
			t.Errorf("panel %q: id %d invalid or already used by %q", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		if p.Title == "" || p.Type == "" {
			t.Errorf("panel %d: title %q, type %q: both must be set", p.ID, p.Title, p.Type)
		}
		if g := p.GridPos; g == nil || g.W < 1 || g.H < 1 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q, target %s: empty expr", p.Title, tg.RefID)
			}
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no targets", p.Title)
		}
	}
}

// labelValues matches Grafana's label_values(selector, label) variable
// query.
var labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// variableQuery returns the query text of a query variable, which Grafana
// stores either as a string or as an object with a "query" field.
func variableQuery(t *testing.T, v variable) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
	}
	return o.Query
}

// TestRegisteredCatalog guards the test itself: if gathering stopped
// returning mailgate's metrics, every name check would pass vacuously.
func TestRegisteredCatalog(t *testing.T) {
	c := registered(t)
	var names []string
	for n := range c {
		if strings.HasPrefix(n, "mailgate_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) < 10 {
		t.Fatalf("only %d mailgate series registered: %v", len(names), names)
	}
	if !c["mailgate_queue_depth"]["queue"] || !c["mailgate_inbound_delivery_seconds_bucket"]["le"] {
		t.Errorf("labels missing from the catalog: %v %v", c["mailgate_queue_depth"], c["mailgate_inbound_delivery_seconds_bucket"])
	}
	if problems := checkExpr(c, `rate(mailgate_inbound_mesages_total[5m])`); len(problems) == 0 {
		t.Error("a misspelt metric passed the check")
	}
	if problems := checkExpr(c, `sum by (outcom) (mailgate_inbound_messages_total)`); len(problems) == 0 {
		t.Error("a misspelt label passed the check")
	}
}
