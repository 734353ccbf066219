package mailtext

import "testing"

func TestNormalizeSubject(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Order 12", "Order 12"},
		{"Re: Order 12", "Order 12"},
		{"RE: AW: Re: Order 12", "Order 12"},
		{"Fwd: WG: SV: Order 12", "Order 12"},
		{"Re[2]: Order 12", "Order 12"},
		{"Re(3): Order 12", "Order 12"},
		{"  Re:   Order   12  ", "Order 12"},
		{"Отв: Заказ", "Заказ"},
		{"回复：订单", "订单"},
		{"Question: where is my order?", "Question: where is my order?"},
		{"Re: Question: where?", "Question: where?"},
		{"Re:", ""},
		{"", ""},
		{"Re[x]: keep", "Re[x]: keep"},
	}
	for _, tt := range tests {
		if got := NormalizeSubject(tt.in); got != tt.want {
			t.Errorf("NormalizeSubject(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestReplySubject(t *testing.T) {
	if got := ReplySubject("AW: Re: Order 12", "Your message"); got != "Re: Order 12" {
		t.Errorf("got %q", got)
	}
	if got := ReplySubject("Re: ", "Your message"); got != "Your message" {
		t.Errorf("got %q", got)
	}
}

func FuzzNormalizeSubject(f *testing.F) {
	f.Add("Re: AW: x")
	f.Add("回复：订单")
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeSubject(s)
		if NormalizeSubject(n) != n {
			t.Errorf("not idempotent: %q -> %q -> %q", s, n, NormalizeSubject(n))
		}
	})
}
