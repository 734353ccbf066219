package userliketest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"mailgate/userlike"
)

func TestCenterInbound(t *testing.T) {
	media := []byte("%PDF-1.4 test file")
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pdf")
		w.Write(media)
	}))
	defer files.Close()
	var out bytes.Buffer
	c := New(Options{InboundToken: "in-tok", Out: &out})
	srv := httptest.NewServer(c)
	defer srv.Close()

	post := func(token, body string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		req.Header.Set(userlike.TokenHeader, token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		token, body string
		want        int
	}{
		{"wrong", `{"email":"a@b.c","text":"hi"}`, 401},
		{"", `{"email":"a@b.c","text":"hi"}`, 401},
		{"in-tok", `{"text":"no email"}`, 400},
		{"in-tok", `{"email":"a@b.c","text":"x","url":"http://x"}`, 400},
		{"in-tok", `not json`, 400},
		{"in-tok", `{"email":"a@b.c","name":"Ann","text":"hello"}`, 200},
		{"in-tok", `{"email":"a@b.c","url":"` + files.URL + `/f.pdf"}`, 200},
	}
	for _, tt := range tests {
		if got := post(tt.token, tt.body); got != tt.want {
			t.Errorf("POST %s with %q: %d, want %d", tt.body, tt.token, got, tt.want)
		}
	}
	conv := c.Conversation("a@b.c")
	if len(conv) != 2 || conv[0].Text != "hello" || conv[0].Name != "Ann" {
		t.Fatalf("conversation = %+v", conv)
	}
	sum := sha256.Sum256(media)
	if conv[1].MediaSHA256 != hex.EncodeToString(sum[:]) || conv[1].MediaStatus != 200 || conv[1].MediaType != "application/pdf" {
		t.Errorf("media entry = %+v", conv[1])
	}
	if c.LastContact() != "a@b.c" || !strings.Contains(out.String(), "hello") {
		t.Errorf("last contact %q, console %q", c.LastContact(), out.String())
	}
}

func TestCenterReply(t *testing.T) {
	var got *userlike.Outbound
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(userlike.TokenHeader) != "out-tok" {
			w.WriteHeader(401)
			return
		}
		b, _ := io.ReadAll(r.Body)
		o, err := userlike.DecodeOutbound(b)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		got = o
	}))
	defer hook.Close()
	c := New(Options{OutboundURL: hook.URL, OutboundToken: "out-tok", Operator: "Olga"})
	code, err := c.Reply(context.Background(), "jane@example.com", "We are on it.")
	if err != nil || code != 200 {
		t.Fatalf("reply: %d %v", code, err)
	}
	if got == nil || got.Contact != "jane@example.com" || got.Text != "We are on it." || got.Operator != "Olga" || got.ID == "" {
		t.Errorf("webhook decoded %+v", got)
	}
	if conv := c.Conversation("jane@example.com"); len(conv) != 1 || conv[0].FromContact {
		t.Errorf("conversation = %+v", conv)
	}
}
