package metrics

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// healthBody is the JSON document of /healthz and /readyz.
type healthBody struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Instance and Leases are set on /readyz when the daemon runs with
	// channel leases (SetLeaseFunc).
	Instance string       `json:"instance,omitempty"`
	Leases   []LeaseState `json:"leases,omitempty"`
}

// LeaseState is one channel's lease as /readyz shows it.
type LeaseState struct {
	Channel string `json:"channel"`
	// Holder is the instance holding the lease; empty when nobody holds
	// a live lease.
	Holder string `json:"holder,omitempty"`
	// Token is the holder's fencing token.
	Token int64 `json:"token,omitempty"`
	// Here reports whether this instance holds it (and does the
	// channel's mailbox work).
	Here bool `json:"here"`
}

// leaseFunc is what SetLeaseFunc installs.
type leaseFunc struct {
	instance string
	f        func(ctx context.Context) []LeaseState
}

// SetLeaseFunc makes /readyz name this instance and list the channels'
// leases as f reports them.
func (m *Metrics) SetLeaseFunc(instance string, f func(ctx context.Context) []LeaseState) {
	m.leases.Store(&leaseFunc{instance: instance, f: f})
}

// Handler returns the operators' HTTP handler:
//
//   - GET /metrics: m's registry in the Prometheus exposition format.
//   - GET /healthz: 200 {"status":"ok"} while the process serves HTTP at all
//     (liveness).
//   - GET /readyz: calls ready with the request's context; nil gives
//     200 {"status":"ready"}, an error gives
//     503 {"status":"not ready","reason":"<error text>"} (readiness). A nil
//     ready is always ready. With SetLeaseFunc, both also carry
//     "instance" and "leases".
//
// The error text of ready is shown to whoever can reach the endpoint, so
// it must not carry secrets. Other paths are 404; methods other than GET
// and HEAD on /healthz and /readyz are 405.
func (m *Metrics) Handler(ready func(ctx context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A failing collector should cost its own series, not the scrape.
		ErrorHandling: promhttp.ContinueOnError,
		// Counts scrape errors in promhttp_metric_handler_errors_total.
		Registry: m.reg,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, http.StatusOK, healthBody{Status: "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		body := healthBody{Status: "ready"}
		if lf := m.leases.Load(); lf != nil {
			body.Instance, body.Leases = lf.instance, lf.f(r.Context())
		}
		if ready != nil {
			if err := ready(r.Context()); err != nil {
				body.Status, body.Reason = "not ready", err.Error()
				writeHealth(w, http.StatusServiceUnavailable, body)
				return
			}
		}
		writeHealth(w, http.StatusOK, body)
	})
	return mux
}

// writeHealth writes body as an uncacheable JSON response with status code.
func writeHealth(w http.ResponseWriter, code int, body healthBody) {
	b, err := json.Marshal(body)
	if err != nil {
		// healthBody holds only strings; Marshal cannot fail on it.
		http.Error(w, "metrics: encode health: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
