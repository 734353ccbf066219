package verify

import (
	"context"
	"testing"
	"time"
)

func BenchmarkVerify(b *testing.B) {
	keys := newTestKeys(b, "example.com")
	b.Run("authres", func(b *testing.B) {
		v, err := New(Options{TrustedAuthservIDs: []string{"mx.google.com"}})
		if err != nil {
			b.Fatal(err)
		}
		raw := message(body,
			"Authentication-Results: mx.google.com;\r\n dkim=pass header.i=@example.com header.s=s1;\r\n spf=pass (google.com: domain of jane@example.com designates 192.0.2.1 as permitted sender) smtp.mailfrom=jane@example.com;\r\n dmarc=pass (p=REJECT) header.from=example.com",
			"From: Jane Doe <jane@example.com>")
		b.ReportAllocs()
		for b.Loop() {
			if got := v.Verify(context.Background(), raw); !got.Passed() {
				b.Fatal(got.Reason)
			}
		}
	})
	b.Run("self-dkim-cached", func(b *testing.B) {
		v, err := New(Options{SelfDKIM: true, Resolver: NewCachingResolver(keys.res, time.Hour, 16)})
		if err != nil {
			b.Fatal(err)
		}
		raw := keys.sign(b, message(body, "From: Jane Doe <jane@example.com>"), "example.com", time.Time{})
		b.ReportAllocs()
		for b.Loop() {
			if got := v.Verify(context.Background(), raw); !got.Passed() {
				b.Fatal(got.Reason)
			}
		}
	})
}
