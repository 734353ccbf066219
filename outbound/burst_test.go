package outbound

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mailgate/mailaddr"
	"mailgate/store"
)

// TestBurstLanes checks how a burst is split over its connections: one
// connection below ParallelFrom, BurstConnections from it, every contact
// (compared as mailaddr.Key) on one connection, and the connections as
// evenly loaded as the contacts allow.
func TestBurstLanes(t *testing.T) {
	contacts := func(n, distinct int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("c%d@example.com", i%distinct))
		}
		return out
	}
	tests := []struct {
		name     string
		contacts []string
		lanes    int
		loads    []int // emails per connection
	}{
		{name: "one email", contacts: contacts(1, 1), lanes: 1, loads: []int{1}},
		{name: "just below ParallelFrom", contacts: contacts(ParallelFrom-1, ParallelFrom-1), lanes: 1, loads: []int{ParallelFrom - 1}},
		{name: "ParallelFrom", contacts: contacts(ParallelFrom, ParallelFrom), lanes: BurstConnections, loads: []int{8, 8}},
		{name: "odd burst", contacts: contacts(501, 501), lanes: BurstConnections, loads: []int{251, 250}},
		{name: "one contact", contacts: contacts(20, 1), lanes: BurstConnections, loads: []int{20, 0}},
		{name: "three contacts", contacts: contacts(30, 3), lanes: BurstConnections, loads: []int{20, 10}},
		{name: "case of the address", contacts: append(contacts(16, 16), "C3@Example.COM", " c4@example.com"), lanes: BurstConnections, loads: []int{9, 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs := make([]*job, len(tt.contacts))
			for i, c := range tt.contacts {
				jobs[i] = &job{batch: store.OutboxBatch{Contact: c}}
			}
			lane, n := lanes(jobs)
			if n != tt.lanes {
				t.Fatalf("%d connections, want %d", n, tt.lanes)
			}
			loads := make([]int, n)
			laneOf := map[string]int{}
			for i, l := range lane {
				if l < 0 || l >= n {
					t.Fatalf("email %d on connection %d of %d", i, l, n)
				}
				loads[l]++
				key := mailaddr.Key(tt.contacts[i])
				if first, ok := laneOf[key]; ok && first != l {
					t.Errorf("contact %q on connections %d and %d", key, first, l)
				}
				laneOf[key] = l
			}
			if !slices.Equal(loads, tt.loads) {
				t.Errorf("emails per connection %v, want %v", loads, tt.loads)
			}
		})
	}
}

// TestOutboundBurstConnections sends bursts to a relay that takes 5 ms per
// RCPT TO and checks how many connections each used and how many
// transactions ran at once: a burst of ParallelFrom or more goes over
// BurstConnections connections at once, a smaller one over one; every
// reply is delivered once and recorded sent.
func TestOutboundBurstConnections(t *testing.T) {
	tests := []struct {
		replies int
		conns   int
	}{
		{replies: 1, conns: 1},
		{replies: ParallelFrom - 1, conns: 1},
		{replies: ParallelFrom, conns: BurstConnections},
		{replies: 60, conns: BurstConnections},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.replies), func(t *testing.T) {
			f := newOutboundFixture(t)
			for i := range tt.replies {
				f.post(map[string]any{"email": fmt.Sprintf("c%d@example.com", i), "text": fmt.Sprintf("reply %d", i)})
			}
			f.clk.Add(11 * time.Second)
			var mu sync.Mutex
			active, most := 0, 0
			f.relay.setRcpt(func(int, string) error {
				mu.Lock()
				active++
				most = max(most, active)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				active--
				mu.Unlock()
				return nil
			})
			f.flush()
			conns, _ := f.relay.counts()
			if conns != tt.conns {
				t.Errorf("%d connections, want %d", conns, tt.conns)
			}
			if most != tt.conns {
				t.Errorf("at most %d transactions at once, want %d", most, tt.conns)
			}
			seen := map[string]int{}
			for _, m := range f.relay.delivered() {
				seen[m.to[0]]++
			}
			for i := range tt.replies {
				if c := fmt.Sprintf("c%d@example.com", i); seen[c] != 1 {
					t.Errorf("%s got %d emails, want 1", c, seen[c])
				}
			}
			counts, err := f.db.OutboxCounts(context.Background(), "support")
			if err != nil {
				t.Fatal(err)
			}
			if counts[store.OutboxSent] != tt.replies {
				t.Errorf("%d replies recorded sent, want %d (counts %v)", counts[store.OutboxSent], tt.replies, counts)
			}
		})
	}
}

// TestOutboundBurstBrokenConnection breaks one connection of a burst (the
// relay answers 421 to one contact's RCPT TO): only the emails after it on
// that connection wait for a retry, the other connection delivers all of
// its own, and none is failed or lost.
func TestOutboundBurstBrokenConnection(t *testing.T) {
	const replies = 40
	f := newOutboundFixture(t)
	for i := range replies {
		f.post(map[string]any{"email": fmt.Sprintf("c%d@example.com", i), "text": fmt.Sprintf("reply %d", i)})
	}
	f.clk.Add(11 * time.Second)
	f.relay.setRcpt(func(_ int, to string) error {
		if to == "c10@example.com" {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "closing"}
		}
		return nil
	})
	f.flush()
	// The contacts alternate between the two connections (c0, c2, ...
	// and c1, c3, ...): c10 breaks the first after c0-c8, and c12-c38
	// wait; the second delivers its 20. Over one connection, c10 would
	// have held up everything after it: 10 delivered.
	got := map[string]bool{}
	for _, m := range f.relay.delivered() {
		got[m.to[0]] = true
	}
	if len(got) != 25 {
		t.Errorf("%d emails delivered, want 25: %v", len(got), got)
	}
	for i := 1; i < replies; i += 2 {
		if c := fmt.Sprintf("c%d@example.com", i); !got[c] {
			t.Errorf("%s not delivered: the other connection's break held it up", c)
		}
	}
	counts, err := f.db.OutboxCounts(context.Background(), "support")
	if err != nil {
		t.Fatal(err)
	}
	if counts[store.OutboxSent] != 25 || counts[store.OutboxQueued] != replies-25 || counts[store.OutboxFailed] != 0 {
		t.Errorf("counts %v, want 25 sent and %d queued for a retry", counts, replies-25)
	}
	// The retry delivers the rest.
	f.relay.setRcpt(nil)
	f.clk.Add(time.Hour)
	f.flush()
	if n := len(f.relay.delivered()); n != replies {
		t.Errorf("%d emails delivered after the retry, want %d", n, replies)
	}
}
