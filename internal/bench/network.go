package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// network is how the bench reaches the sites: one HTTP transport for every
// SDK client and WebSocket, with a large idle pool (the default keeps two
// connections per host, which makes concurrent senders queue for sockets
// and measures the bench instead of the server), dialing from a rotating
// set of loopback source addresses when the sites are on loopback.
type network struct {
	tr    *http.Transport
	hc    *http.Client
	srcs  []net.IP
	next  atomic.Uint64
	plain net.Dialer
	// opsToken is an operator's session token, shown with every GET of
	// get (GET /v1/ops/site, /metrics).
	opsToken string
	// metricsRefused is called once, with the site's URL, when a site
	// refuses its /metrics to the bench (it serves them to its monitoring
	// networks, serve --metrics-from).
	metricsRefused func(base string)
	refusedOnce    sync.Once
}

// newNetwork returns a network for sites; see Config.SourceAddrs.
func newNetwork(sites []string, sourceAddrs int, opsToken string) *network {
	n := &network{plain: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}, opsToken: opsToken}
	if sourceAddrs > 0 && runtime.GOOS == "linux" && allLoopback(sites) {
		for k := range min(sourceAddrs, 100) {
			n.srcs = append(n.srcs, net.IPv4(127, 0, 0, byte(101+k)))
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = n.dial
	tr.MaxIdleConns = 0 // no limit in total; per host below
	tr.MaxIdleConnsPerHost = 4096
	tr.IdleConnTimeout = 90 * time.Second
	n.tr = tr
	n.hc = &http.Client{Transport: tr}
	return n
}

// dial connects from the next source address in turn (or the kernel's
// choice when there are none).
func (n *network) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if len(n.srcs) == 0 {
		return n.plain.DialContext(ctx, network, addr)
	}
	d := n.plain
	d.LocalAddr = &net.TCPAddr{IP: n.srcs[n.next.Add(1)%uint64(len(n.srcs))]}
	return d.DialContext(ctx, network, addr)
}

// close drops the idle pooled connections.
func (n *network) close() { n.tr.CloseIdleConnections() }

// allLoopback reports whether every site's host is a loopback IP address
// (or localhost), so that other loopback source addresses reach it.
func allLoopback(sites []string) bool {
	for _, s := range sites {
		u, err := url.Parse(s)
		if err != nil {
			return false
		}
		h := u.Hostname()
		if h == "localhost" {
			continue
		}
		ip := net.ParseIP(h)
		if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// dialWS opens a WebSocket to site base as the holder of token, resuming
// after cursor ("" for the beginning).
func (n *network) dialWS(ctx context.Context, base, token, cursor string) (*websocket.Conn, error) {
	u := base + "/v1/ws"
	if cursor != "" {
		u += "?" + url.Values{"cursor": {cursor}}.Encode()
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: n.hc, HTTPHeader: h})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket to %s: HTTP %d: %w", base, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("websocket to %s: %w", base, err)
	}
	conn.SetReadLimit(1 << 20)
	return conn, nil
}

// siteStatus is the part of GET /v1/ops/site the bench reads.
type siteStatus struct {
	Site    string            `json:"site"`
	Applied map[string]uint64 `json:"applied"`
	// EntriesApplied counts the log entries (messages and every other
	// record; a batch record carries many) its read model has applied
	// since the process started.
	EntriesApplied uint64 `json:"entries_applied"`
	Streams        []struct {
		Stream  string `json:"stream"`
		LastSeq uint64 `json:"last_seq"`
	} `json:"streams"`
	StreamsError string `json:"streams_error"`
	// Limited is set when the site could not confirm the operator: the
	// answer then holds only what its public status does.
	Limited string `json:"limited"`
}

// status fetches a site's GET /v1/ops/site. A limited answer (a site that
// refuses its users and could not confirm the operator yet) is an error:
// it has none of the site's positions or streams.
func (n *network) status(ctx context.Context, base string) (siteStatus, error) {
	var st siteStatus
	body, err := n.get(ctx, base+"/v1/ops/site")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("status of %s: %w", base, err)
	}
	if st.Limited != "" {
		return st, fmt.Errorf("status of %s: limited: %s", base, st.Limited)
	}
	return st, nil
}

// metrics fetches a site's /metrics and returns the value of each named
// metric found in it (summed over label sets).
func (n *network) metrics(ctx context.Context, base string, names ...string) (map[string]float64, error) {
	body, err := n.get(ctx, base+"/metrics")
	if errors.Is(err, errForbidden) && n.metricsRefused != nil {
		n.refusedOnce.Do(func() { n.metricsRefused(base) })
	}
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(body), names...), nil
}

// get fetches url with a short timeout, as the operator of opsToken, and
// returns its body (200 only).
func (n *network) get(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	if n.opsToken != "" {
		req.Header.Set("Authorization", "Bearer "+n.opsToken)
	}
	resp, err := n.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusForbidden {
		return nil, fmt.Errorf("get %s: %w", url, errForbidden)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: HTTP %d", url, resp.StatusCode)
	}
	return body, nil
}

var errForbidden = errors.New("HTTP 403 forbidden")

// parseMetrics reads Prometheus text exposition and sums the samples of
// each named metric; names not present are absent from the result.
func parseMetrics(text string, names ...string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		for _, name := range names {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
			if len(fields) == 0 {
				continue
			}
			if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
				out[name] += v
			}
		}
	}
	return out
}
