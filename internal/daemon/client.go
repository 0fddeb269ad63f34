package daemon

// Client talks to a daemon over its Unix socket (samsara ps, record
// --daemon, the tests and the benchmark).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
)

// Client is an API client.
type Client struct {
	// HTTP is the client whose transport dials the socket.
	HTTP *http.Client
}

// NewClient returns a client of the daemon listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		// The benchmark sends 100 requests at once; keep their
		// connections for reuse instead of the default 2 per host.
		MaxIdleConnsPerHost: 128,
	}
	return &Client{HTTP: &http.Client{Transport: tr}}
}

// APIError is a 4xx or 5xx answer.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Message is the daemon's error.
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("daemon: %s (HTTP %d)", e.Message, e.Status) }

// base is the URL prefix; the host is ignored by the socket dialer.
const base = "http://samsara"

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when not nil).
func (c *Client) Do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var e Error
		b, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = string(b)
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Stream copies a GET answer's body (console, log) to w.
func (c *Client) Stream(path string, w io.Writer) error {
	resp, err := c.HTTP.Get(base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var e Error
		json.NewDecoder(resp.Body).Decode(&e)
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// Create creates a recording.
func (c *Client) Create(req CreateRecording) (*Recording, error) {
	var r Recording
	return &r, c.Do("POST", "/v1/recordings", req, &r)
}

// Get returns one recording.
func (c *Client) Get(id string) (*Recording, error) {
	var r Recording
	return &r, c.Do("GET", "/v1/recordings/"+url.PathEscape(id), nil, &r)
}

// List returns the recordings, filtered by state and labels (key=value).
func (c *Client) List(state State, labels ...string) ([]*Recording, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", string(state))
	}
	for _, l := range labels {
		q.Add("label", l)
	}
	var rs []*Recording
	return rs, c.Do("GET", "/v1/recordings?"+q.Encode(), nil, &rs)
}

// Stop stops a recording.
func (c *Client) Stop(id string) (*Recording, error) {
	var r Recording
	return &r, c.Do("POST", "/v1/recordings/"+url.PathEscape(id)+"/stop", nil, &r)
}

// Replay starts a replay of a recording.
func (c *Client) Replay(id string) (*Replay, error) {
	var rp Replay
	return &rp, c.Do("POST", "/v1/recordings/"+url.PathEscape(id)+"/replays", nil, &rp)
}

// GetReplay returns one replay.
func (c *Client) GetReplay(id, rid string) (*Replay, error) {
	var rp Replay
	return &rp, c.Do("GET", "/v1/recordings/"+url.PathEscape(id)+"/replays/"+url.PathEscape(rid), nil, &rp)
}
