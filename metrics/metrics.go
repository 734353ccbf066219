// Package metrics is mailgate's Prometheus instrumentation and its small
// HTTP surface for operators: /metrics, /healthz and /readyz.
//
// A Metrics value owns a private prometheus.Registry; nothing is registered
// with the client library's global registry, so two values (two daemons in
// one test binary, say) never collide. Counters and histograms are updated
// by the daemon as events happen; gauges that describe state (IMAP
// connection, queue depths, dead letters) are read on each scrape from a
// function the daemon installs with SetStateFunc.
//
// Every series carries a "channel" label, the channel name from the
// configuration. Other labels take values from small fixed sets, so the
// number of series stays bounded whatever the daemon passes in: an unknown
// outcome is counted as "other", and a skip reason that is not a short
// snake_case word is counted as "other" too.
package metrics

import (
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Inbound outcomes, the values of the outcome label of
// mailgate_inbound_messages_total.
const (
	InboundPosted      = "posted"
	InboundSkipped     = "skipped"
	InboundQuarantined = "quarantined"
	InboundDead        = "dead"
	InboundRetried     = "retried"
)

// Outbound outcomes, the values of the outcome label of
// mailgate_outbound_messages_total.
const (
	OutboundSent      = "sent"
	OutboundRetried   = "retried"
	OutboundFailed    = "failed"
	OutboundCancelled = "cancelled"
)

// OtherLabel is the label value that replaces an outcome or reason outside
// the known set.
const OtherLabel = "other"

// maxReasonLen is the longest skip reason kept as a label value.
const maxReasonLen = 32

// LatencyBuckets are the upper bounds, in seconds, of the delivery latency
// histograms: from 10ms to one hour.
func LatencyBuckets() []float64 {
	return []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
}

// Metrics holds mailgate's collectors and the registry they live in. Its
// methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	inbound          *prometheus.CounterVec
	skipped          *prometheus.CounterVec
	outbound         *prometheus.CounterVec
	inboundLatency   *prometheus.HistogramVec
	outboundLatency  *prometheus.HistogramVec
	charsetFallbacks *prometheus.CounterVec
	history          *prometheus.CounterVec
	actionsRefused   *prometheus.CounterVec
	leaseTakeovers   *prometheus.CounterVec
	state            *stateCollector
	leases           atomic.Pointer[leaseFunc]
}

// New returns a Metrics with its own registry, holding mailgate's metrics,
// the Go runtime collector and the process collector.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_inbound_messages_total",
			Help: "Inbound emails by final or intermediate outcome (posted, skipped, quarantined, dead, retried).",
		}, []string{"channel", "outcome"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_inbound_skipped_total",
			Help: "Inbound emails not posted to Userlike, by reason.",
		}, []string{"channel", "reason"}),
		outbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_outbound_messages_total",
			Help: "Outbound replies by outcome (sent, retried, failed, cancelled).",
		}, []string{"channel", "outcome"}),
		inboundLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailgate_inbound_delivery_seconds",
			Help:    "Time from an email's arrival in the mailbox to its acceptance by Userlike.",
			Buckets: LatencyBuckets(),
		}, []string{"channel"}),
		outboundLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailgate_outbound_delivery_seconds",
			Help:    "Time from a Userlike webhook to the reply's acceptance by the SMTP relay.",
			Buckets: LatencyBuckets(),
		}, []string{"channel"}),
		history: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_inbound_history_total",
			Help: "Messages already in a folder when mailgate started reading it (imap.start), left unposted.",
		}, []string{"channel"}),
		actionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_imap_actions_refused_total",
			Help: "IMAP actions on inbound mail (imap.after, quarantine moves) that the server refused; the mail stays where it was.",
		}, []string{"channel"}),
		charsetFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_charset_fallbacks_total",
			Help: "Message parts whose declared charset was unknown or wrong and were decoded by a fallback.",
		}, []string{"channel"}),
		leaseTakeovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_lease_takeovers_total",
			Help: "Channel leases this instance acquired from another holder (or from its own earlier, crashed self): failovers.",
		}, []string{"channel"}),
		state: newStateCollector(),
	}
	m.reg.MustRegister(
		m.inbound, m.skipped, m.outbound,
		m.inboundLatency, m.outboundLatency, m.charsetFallbacks, m.history, m.actionsRefused, m.leaseTakeovers,
		m.state,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the registry holding m's collectors, for gathering in
// tests or for registering further collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// InitChannel creates every counter and histogram series of channel at
// zero, so that rate() and absent() behave from the first scrape on,
// before the first event. Skip reasons are created as they occur.
func (m *Metrics) InitChannel(channel string) {
	for _, o := range [...]string{InboundPosted, InboundSkipped, InboundQuarantined, InboundDead, InboundRetried} {
		m.inbound.WithLabelValues(channelLabel(channel), o)
	}
	for _, o := range [...]string{OutboundSent, OutboundRetried, OutboundFailed, OutboundCancelled} {
		m.outbound.WithLabelValues(channelLabel(channel), o)
	}
	m.inboundLatency.WithLabelValues(channelLabel(channel))
	m.outboundLatency.WithLabelValues(channelLabel(channel))
	m.charsetFallbacks.WithLabelValues(channelLabel(channel))
	m.history.WithLabelValues(channelLabel(channel))
	m.actionsRefused.WithLabelValues(channelLabel(channel))
}

// LeaseTakeover counts one acquisition of channel's lease that had a holder
// before.
func (m *Metrics) LeaseTakeover(channel string) {
	m.leaseTakeovers.WithLabelValues(channelLabel(channel)).Inc()
}

// Inbound counts one inbound email of channel reaching outcome, one of
// InboundPosted, InboundSkipped, InboundQuarantined, InboundDead or
// InboundRetried; any other value is counted as OtherLabel.
func (m *Metrics) Inbound(channel, outcome string) {
	m.inbound.WithLabelValues(channelLabel(channel), inboundOutcome(outcome)).Inc()
}

// SkipReason counts one inbound email of channel skipped for reason, a
// short fixed snake_case word such as "auto_reply" or "bounce". A reason
// that is empty, longer than 32 bytes or not made of [a-z0-9_] is counted
// as OtherLabel. It does not count the skip in
// mailgate_inbound_messages_total: call Inbound for that.
func (m *Metrics) SkipReason(channel, reason string) {
	m.skipped.WithLabelValues(channelLabel(channel), reasonLabel(reason)).Inc()
}

// Outbound counts one outbound reply of channel reaching outcome, one of
// OutboundSent, OutboundRetried, OutboundFailed or OutboundCancelled; any
// other value is counted as OtherLabel.
func (m *Metrics) Outbound(channel, outcome string) {
	m.outbound.WithLabelValues(channelLabel(channel), outboundOutcome(outcome)).Inc()
}

// InboundLatency records d, the time from an email's arrival in channel's
// mailbox to Userlike accepting the POST. A negative d (clock skew between
// the mail server and this host) is recorded as zero.
func (m *Metrics) InboundLatency(channel string, d time.Duration) {
	m.inboundLatency.WithLabelValues(channelLabel(channel)).Observe(seconds(d))
}

// OutboundLatency records d, the time from the Userlike webhook of a reply
// to the SMTP relay accepting it. A negative d is recorded as zero.
func (m *Metrics) OutboundLatency(channel string, d time.Duration) {
	m.outboundLatency.WithLabelValues(channelLabel(channel)).Observe(seconds(d))
}

// History adds n to the count of messages of channel that were in a folder
// before mailgate started reading it and were left unposted.
func (m *Metrics) History(channel string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.history.WithLabelValues(channelLabel(channel)).Add(float64(n))
}

// ActionsRefused adds n to the count of IMAP actions of channel that the
// server refused.
func (m *Metrics) ActionsRefused(channel string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.actionsRefused.WithLabelValues(channelLabel(channel)).Add(float64(n))
}

// CharsetFallbacks adds n to the count of message parts of channel decoded
// with a fallback charset. n <= 0 is ignored.
func (m *Metrics) CharsetFallbacks(channel string, n int) {
	if n <= 0 {
		return
	}
	m.charsetFallbacks.WithLabelValues(channelLabel(channel)).Add(float64(n))
}

// SetStateFunc installs f, which reports the state of every channel. f is
// called on each scrape of /metrics, from the scraping goroutine, so it
// must be safe for concurrent use and quick (read counters kept in memory
// rather than scanning the store). A nil f removes the state gauges. It
// replaces any f installed before.
func (m *Metrics) SetStateFunc(f func() []ChannelState) {
	m.state.set(f)
}

// inboundOutcome returns o if it is a known inbound outcome, OtherLabel
// otherwise.
func inboundOutcome(o string) string {
	switch o {
	case InboundPosted, InboundSkipped, InboundQuarantined, InboundDead, InboundRetried:
		return o
	}
	return OtherLabel
}

// outboundOutcome returns o if it is a known outbound outcome, OtherLabel
// otherwise.
func outboundOutcome(o string) string {
	switch o {
	case OutboundSent, OutboundRetried, OutboundFailed, OutboundCancelled:
		return o
	}
	return OtherLabel
}

// reasonLabel returns reason if it is a short snake_case word, OtherLabel
// otherwise.
func reasonLabel(reason string) string {
	if reason == "" || len(reason) > maxReasonLen {
		return OtherLabel
	}
	for i := 0; i < len(reason); i++ {
		c := reason[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return OtherLabel
		}
	}
	return reason
}

// channelLabel returns channel with invalid UTF-8 replaced, since the
// client library panics on a label value that is not valid UTF-8.
func channelLabel(channel string) string {
	if utf8.ValidString(channel) {
		return channel
	}
	return strings.ToValidUTF8(channel, "\uFFFD")
}

// seconds converts d to seconds, clamping negative durations to zero.
func seconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return d.Seconds()
}
