// Command load is the benchmark's load side: the upstream that streams
// chunks, the clients that read them, and Go's httputil.ReverseProxy as a
// peer. It is compiled, so that the load side is not what a Python proxy's
// figures are limited by (bench/run.py pins it to the other core).
//
//	load upstream                    serve /stream?count=&interval=&size=&id=
//	load goproxy -upstream URL       httputil.ReverseProxy at /stream
//	load streams -url URL -c N ...   N streams started over -spread seconds
//	load leave -url URL -c N         N streams, each left after 5 chunks
//	load short -url URL -n N -k K    N one-chunk streams, K at a time
//	load slow -url URL -rate B       one stream read at B bytes/s
//	load llm -url ROOT -c N -r R     N clients, each R chat completions in turn
//
// The upstream also answers POST /v1/chat/completions as an OpenAI-style
// server streams (chat.completion.chunk events, a usage chunk, [DONE]):
// max_tokens tokens, bench_interval_ms apart, each token's text the time it
// was sent (" tNANOS"). The llm clients send what an LLM SDK sends: a POST
// with a JSON body, on kept-alive connections.
//
// Every chunk the upstream sends is one line, {"seq":S,"sent":NANOS}, padded
// with spaces to -size bytes: its delay is the time it is read minus NANOS
// (one machine, one clock). Each client command prints one JSON object.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: load upstream|goproxy|streams|leave|short|slow [flags]")
		os.Exit(2)
	}
	command, args := os.Args[1], os.Args[2:]
	switch command {
	case "upstream":
		upstream(args)
	case "goproxy":
		goproxy(args)
	case "streams", "leave", "short", "slow":
		clients(command, args)
	case "llm":
		llmClients(args)
	default:
		fmt.Fprintf(os.Stderr, "load: unknown command %q\n", command)
		os.Exit(2)
	}
}

// listen serves handler on a free loopback port and says where.
func listen(name string, handler http.Handler) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s listening on http://%s/\n", name, listener.Addr())
	server := &http.Server{Handler: handler}
	if err := server.Serve(listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// The upstream.

var closes = struct {
	sync.Mutex
	at map[string]int64
}{at: map[string]int64{}}

func upstream(args []string) {
	flags := flag.NewFlagSet("upstream", flag.ExitOnError)
	flags.Parse(args)
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", stream)
	mux.HandleFunc("/v1/chat/completions", chat)
	mux.HandleFunc("/closes", func(w http.ResponseWriter, r *http.Request) {
		closes.Lock()
		defer closes.Unlock()
		json.NewEncoder(w).Encode(closes.at)
	})
	listen("upstream", mux)
}

func intParam(r *http.Request, name string, fallback int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil {
		return v
	}
	return fallback
}

// stream sends count chunks, interval ms apart (0: as fast as the client
// reads), and notes when it saw the client's connection go.
func stream(w http.ResponseWriter, r *http.Request) {
	count := intParam(r, "count", 10)
	interval := time.Duration(intParam(r, "interval", 100)) * time.Millisecond
	size := intParam(r, "size", 64)
	id := r.URL.Query().Get("id")
	flusher := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(200)
	line := make([]byte, 0, size+64)
	var ticker *time.Ticker
	if interval > 0 {
		ticker = time.NewTicker(interval)
		defer ticker.Stop()
	}
	done := r.Context().Done()
	gone := func() {
		if id != "" {
			closes.Lock()
			closes.at[id] = time.Now().UnixNano()
			closes.Unlock()
		}
	}
	for seq := 0; seq < count; seq++ {
		if seq > 0 && ticker != nil {
			select {
			case <-ticker.C:
			case <-done:
				gone()
				return
			}
		}
		line = line[:0]
		line = append(line, `{"seq":`...)
		line = strconv.AppendInt(line, int64(seq), 10)
		line = append(line, `,"sent":`...)
		line = strconv.AppendInt(line, time.Now().UnixNano(), 10)
		line = append(line, '}')
		for len(line) < size-1 {
			line = append(line, ' ')
		}
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			gone()
			return
		}
		if ticker != nil || seq%64 == 63 {
			flusher.Flush()
		}
	}
	flusher.Flush()
}

// Go's reverse proxy, the peer: flushes every write.

func goproxy(args []string) {
	flags := flag.NewFlagSet("goproxy", flag.ExitOnError)
	target := flags.String("upstream", "", "the upstream's root URL")
	flags.Parse(args)
	parsed, err := url.Parse(*target)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	proxy := httputil.NewSingleHostReverseProxy(parsed)
	proxy.FlushInterval = -1
	proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}
	listen("goproxy", proxy)
}

// The clients.

type result struct {
	Streams        int     `json:"streams"`
	Complete       int     `json:"complete"`
	Failed         int     `json:"failed"`
	Corrupt        int     `json:"corrupt"`
	ChunksExpected int     `json:"chunksExpected"`
	ChunksReceived int     `json:"chunksReceived"`
	DelayP50Ms     float64 `json:"delayP50Ms"`
	DelayP99Ms     float64 `json:"delayP99Ms"`
	DelayMaxMs     float64 `json:"delayMaxMs"`
	TTFBP50Ms      float64 `json:"ttfbP50Ms"`
	TTFBP99Ms      float64 `json:"ttfbP99Ms"`
	CloseP50Ms     float64 `json:"closeP50Ms,omitempty"`
	CloseP99Ms     float64 `json:"closeP99Ms,omitempty"`
	CloseMaxMs     float64 `json:"closeMaxMs,omitempty"`
	Closes         int     `json:"closes,omitempty"`
	BytesRead      int64   `json:"bytesRead,omitempty"`
	Seconds        float64 `json:"seconds"`
	FirstError     string  `json:"firstError,omitempty"`
}

type outcome struct {
	delays   []float64 // ms
	ttfb     float64   // ms
	chunks   int
	complete bool
	err      error
	leftAt   int64
	bytes    int64
	corrupt  int
}

func quantile(values []float64, q float64) float64 {
	if len(values) == 0 {
		return 0
	}
	sort.Float64s(values)
	i := int(q*float64(len(values)-1) + 0.5)
	return values[i]
}

func clients(command string, args []string) {
	flags := flag.NewFlagSet(command, flag.ExitOnError)
	target := flags.String("url", "", "the /stream URL to read")
	concurrent := flags.Int("c", 1, "streams (streams, leave)")
	spread := flags.Float64("spread", 1, "seconds over which the streams start")
	count := flags.Int("count", 50, "chunks per stream")
	interval := flags.Int("interval", 100, "ms between chunks")
	size := flags.Int("size", 64, "bytes per chunk")
	total := flags.Int("n", 2000, "streams (short)")
	parallel := flags.Int("k", 50, "streams at a time (short)")
	rate := flags.Int("rate", 1<<20, "bytes a second (slow)")
	seconds := flags.Float64("seconds", 5, "how long to read (slow)")
	timeout := flags.Float64("timeout", 120, "give up after this many seconds")
	flags.Parse(args)

	transport := &http.Transport{
		MaxIdleConnsPerHost: 4096,
		DisableCompression:  true,
		// A stream per connection, as a browser tab or an SDK opens them.
		MaxConnsPerHost: 0,
	}
	client := &http.Client{Transport: transport, Timeout: time.Duration(*timeout * float64(time.Second))}
	started := time.Now()
	var outcomes []outcome
	switch command {
	case "streams":
		outcomes = many(*concurrent, *spread, func(i int) outcome {
			return read(client, fmt.Sprintf("%s?count=%d&interval=%d&size=%d", *target, *count, *interval, *size), *size, -1, 0)
		})
	case "leave":
		outcomes = many(*concurrent, *spread, func(i int) outcome {
			return leave(fmt.Sprintf("%s?count=1000&interval=%d&size=%d&id=%s", *target, *interval, *size, leaveID(i)), *size)
		})
	case "short":
		outcomes = make([]outcome, *total)
		var next sync.Mutex
		n := 0
		var wg sync.WaitGroup
		for w := 0; w < *parallel; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					next.Lock()
					i := n
					n++
					next.Unlock()
					if i >= *total {
						return
					}
					outcomes[i] = read(client, fmt.Sprintf("%s?count=1&interval=0&size=%d", *target, *size), *size, -1, 0)
				}
			}()
		}
		wg.Wait()
	case "slow":
		outcomes = []outcome{read(client, fmt.Sprintf("%s?count=10000000&interval=0&size=1024", *target), 1024, -1,
			float64(*rate), *seconds)}
	}
	elapsed := time.Since(started).Seconds()
	expected := *count
	if command == "short" {
		expected = 1
	} else if command == "leave" {
		expected = 5
	}
	out := summarize(outcomes, expected)
	out.Seconds = elapsed
	if command == "leave" {
		closeDelays(&out, *target, outcomes)
	}
	if command == "slow" {
		out.BytesRead = outcomes[0].bytes
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// many runs n streams (or clients), the i-th started at i/n of spread
// seconds.
func many[T any](n int, spread float64, run func(int) T) []T {
	outcomes := make([]T, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(float64(i) / float64(n) * spread * float64(time.Second)))
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			outcomes[i] = run(i)
		}(i)
	}
	wg.Wait()
	return outcomes
}

// read reads one stream, line by line: each line's delay, until the end
// (or, with leaveAfter >= 0, until that many lines, then it closes).
// With rate > 0 it reads for the given seconds at that many bytes a second.
func read(client *http.Client, target string, size int, leaveAfter int, rate float64, seconds ...float64) outcome {
	var o outcome
	began := time.Now()
	request, _ := http.NewRequest("GET", target, nil)
	if leaveAfter >= 0 || rate > 0 {
		// A connection of its own, closed when the client leaves.
		request.Close = true
	}
	response, err := client.Do(request)
	if err != nil {
		o.err = err
		return o
	}
	defer response.Body.Close()
	if response.StatusCode != 200 {
		o.err = fmt.Errorf("status %d", response.StatusCode)
		return o
	}
	if rate > 0 {
		buffer := make([]byte, 64*1024)
		deadline := began.Add(time.Duration(seconds[0] * float64(time.Second)))
		for time.Now().Before(deadline) {
			n, err := io.ReadFull(response.Body, buffer[:int(rate/16)])
			o.bytes += int64(n)
			if err != nil {
				o.err = err
				return o
			}
			time.Sleep(time.Until(began.Add(time.Duration(float64(o.bytes) / rate * float64(time.Second)))))
		}
		o.complete = true
		return o
	}
	reader := bufio.NewReaderSize(response.Body, 64*1024)
	for {
		line, err := reader.ReadSlice('\n')
		now := time.Now()
		if len(line) > 0 {
			if o.chunks == 0 {
				o.ttfb = float64(now.Sub(began).Nanoseconds()) / 1e6
			}
			if sent, ok := sentAt(line); ok && len(line) == size {
				o.delays = append(o.delays, float64(now.UnixNano()-sent)/1e6)
				o.chunks++
			} else {
				// Every byte is checked: a chunk cut, merged or mangled.
				o.corrupt++
			}
			if leaveAfter >= 0 && o.chunks >= leaveAfter {
				o.leftAt = time.Now().UnixNano()
				o.complete = true
				return o
			}
		}
		if err == io.EOF {
			o.complete = true
			return o
		}
		if err != nil {
			o.err = err
			return o
		}
	}
}

// leaveID names the i-th stream that leaves, uniquely across runs (the
// upstream outlives them).
func leaveID(i int) string {
	return fmt.Sprintf("leave-%d-%d", os.Getpid(), i)
}

// leave reads a stream on a connection of its own until 5 chunks have
// come, then closes the connection at once: the time it closed is noted.
func leave(target string, size int) outcome {
	var o outcome
	parsed, _ := url.Parse(target)
	began := time.Now()
	conn, err := net.Dial("tcp", parsed.Host)
	if err != nil {
		o.err = err
		return o
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", parsed.RequestURI(), parsed.Host)
	reader := bufio.NewReader(conn)
	response, err := http.ReadResponse(reader, nil)
	if err != nil {
		o.err = err
		return o
	}
	if response.StatusCode != 200 {
		o.err = fmt.Errorf("status %d", response.StatusCode)
		return o
	}
	lines := bufio.NewReader(response.Body)
	for o.chunks < 5 {
		line, err := lines.ReadSlice('\n')
		now := time.Now()
		if sent, ok := sentAt(line); ok && len(line) == size {
			if o.chunks == 0 {
				o.ttfb = float64(now.Sub(began).Nanoseconds()) / 1e6
			}
			o.delays = append(o.delays, float64(now.UnixNano()-sent)/1e6)
			o.chunks++
		} else if len(line) > 0 {
			o.corrupt++
		}
		if err != nil {
			o.err = err
			return o
		}
	}
	o.leftAt = time.Now().UnixNano()
	conn.Close()
	o.complete = true
	return o
}

// sentAt reads NANOS out of a line {"seq":S,"sent":NANOS}.
func sentAt(line []byte) (int64, bool) {
	const key = `"sent":`
	for i := 0; i+len(key) < len(line); i++ {
		if line[i] == '"' && string(line[i:i+len(key)]) == key {
			var v int64
			j := i + len(key)
			for ; j < len(line) && line[j] >= '0' && line[j] <= '9'; j++ {
				v = v*10 + int64(line[j]-'0')
			}
			return v, j > i+len(key)
		}
	}
	return 0, false
}

func summarize(outcomes []outcome, expected int) result {
	var r result
	var delays, ttfbs []float64
	for _, o := range outcomes {
		r.Streams++
		r.ChunksExpected += expected
		r.ChunksReceived += o.chunks
		r.Corrupt += o.corrupt
		if o.err != nil {
			r.Failed++
			if r.FirstError == "" {
				r.FirstError = o.err.Error()
			}
			continue
		}
		if o.complete && o.chunks == expected && o.corrupt == 0 {
			r.Complete++
		}
		delays = append(delays, o.delays...)
		if o.chunks > 0 {
			ttfbs = append(ttfbs, o.ttfb)
		}
	}
	r.DelayP50Ms = quantile(delays, 0.5)
	r.DelayP99Ms = quantile(delays, 0.99)
	r.DelayMaxMs = quantile(delays, 1)
	r.TTFBP50Ms = quantile(ttfbs, 0.5)
	r.TTFBP99Ms = quantile(ttfbs, 0.99)
	return r
}

// closeDelays asks the upstream when it saw each left stream's connection
// close: the time from the client leaving to that.
func closeDelays(r *result, target string, outcomes []outcome) {
	parsed, _ := url.Parse(target)
	// Through a proxy, LOAD_UPSTREAM names the upstream's root URL; by
	// default the target is the upstream itself.
	upstreamURL := os.Getenv("LOAD_UPSTREAM")
	if upstreamURL == "" {
		upstreamURL = fmt.Sprintf("%s://%s/", parsed.Scheme, parsed.Host)
	}
	deadline := time.Now().Add(2 * time.Second)
	var seen map[string]int64
	for {
		response, err := http.Get(upstreamURL + "closes")
		if err == nil {
			seen = map[string]int64{}
			json.NewDecoder(response.Body).Decode(&seen)
			response.Body.Close()
		}
		missing := 0
		for i := range outcomes {
			if _, ok := seen[leaveID(i)]; !ok {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var delays []float64
	for i, o := range outcomes {
		if at, ok := seen[leaveID(i)]; ok && o.leftAt > 0 {
			delays = append(delays, float64(at-o.leftAt)/1e6)
		}
	}
	r.Closes = len(delays)
	r.CloseP50Ms = quantile(delays, 0.5)
	r.CloseP99Ms = quantile(delays, 0.99)
	r.CloseMaxMs = quantile(delays, 1)
}

// The LLM scenario.

type chatAsk struct {
	Model         string  `json:"model"`
	Stream        bool    `json:"stream"`
	MaxTokens     int     `json:"max_tokens"`
	IntervalMs    float64 `json:"bench_interval_ms"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

const chunkHead = `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764000000,"model":"bench-model","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":{`

// chat streams a chat completion as OpenAI's API does: one event per token,
// then the finish, the usage (when asked for) and [DONE].
func chat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var ask chatAsk
	if err != nil || r.Method != "POST" || json.Unmarshal(body, &ask) != nil || !ask.Stream {
		http.Error(w, `{"error":{"message":"a streamed chat completion, please"}}`, 400)
		return
	}
	tokens := ask.MaxTokens
	if tokens <= 0 {
		tokens = 20
	}
	interval := time.Duration(ask.IntervalMs * float64(time.Millisecond))
	flusher := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	var ticker *time.Ticker
	if interval > 0 {
		ticker = time.NewTicker(interval)
		defer ticker.Stop()
	}
	done := r.Context().Done()
	event := make([]byte, 0, 512)
	for i := 0; i < tokens; i++ {
		if i > 0 && ticker != nil {
			select {
			case <-ticker.C:
			case <-done:
				return
			}
		}
		event = append(event[:0], chunkHead...)
		if i == 0 {
			event = append(event, `"role":"assistant",`...)
		}
		event = append(event, `"content":" t`...)
		event = strconv.AppendInt(event, time.Now().UnixNano(), 10)
		event = append(event, `"},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
		if _, err := w.Write(event); err != nil {
			return
		}
		flusher.Flush()
	}
	event = append(event[:0], chunkHead...)
	event = append(event, `},"logprobs":null,"finish_reason":"stop"}]}`+"\n\n"...)
	if ask.StreamOptions != nil && ask.StreamOptions.IncludeUsage {
		event = append(event, `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764000000,"model":"bench-model","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":`...)
		event = strconv.AppendInt(event, int64(tokens), 10)
		event = append(event, `,"total_tokens":`...)
		event = strconv.AppendInt(event, int64(tokens+12), 10)
		event = append(event, "}}\n\n"...)
	}
	event = append(event, "data: [DONE]\n\n"...)
	w.Write(event)
	flusher.Flush()
}

type llmResult struct {
	Requests        int     `json:"requests"`
	Complete        int     `json:"complete"`
	Failed          int     `json:"failed"`
	Corrupt         int     `json:"corrupt"`
	TokensExpected  int     `json:"tokensExpected"`
	TokensReceived  int     `json:"tokensReceived"`
	Reused          int     `json:"reused"`
	DelayP50Ms      float64 `json:"delayP50Ms"`
	DelayP99Ms      float64 `json:"delayP99Ms"`
	TTFTP50Ms       float64 `json:"ttftP50Ms"`
	TTFTP99Ms       float64 `json:"ttftP99Ms"`
	TTFTReusedP50Ms float64 `json:"ttftReusedP50Ms"`
	TTFTReusedP99Ms float64 `json:"ttftReusedP99Ms"`
	Seconds         float64 `json:"seconds"`
	FirstError      string  `json:"firstError,omitempty"`
}

type llmOutcome struct {
	delays   []float64
	ttft     float64
	tokens   int
	reused   bool
	complete bool
	corrupt  int
	err      error
}

func llmClients(args []string) {
	flags := flag.NewFlagSet("llm", flag.ExitOnError)
	root := flags.String("url", "", "the root URL (the request goes to v1/chat/completions under it)")
	concurrent := flags.Int("c", 1, "clients")
	requests := flags.Int("r", 1, "chat completions per client, one after another")
	spread := flags.Float64("spread", 1, "seconds over which the clients start")
	tokens := flags.Int("tokens", 20, "tokens per answer")
	interval := flags.Float64("interval", 50, "ms between tokens")
	pause := flags.Float64("pause", 10, "ms a client waits between its requests")
	timeout := flags.Float64("timeout", 120, "give up after this many seconds")
	flags.Parse(args)
	transport := &http.Transport{MaxIdleConnsPerHost: 4096, DisableCompression: true}
	client := &http.Client{Transport: transport, Timeout: time.Duration(*timeout * float64(time.Second))}
	body, _ := json.Marshal(map[string]any{
		"model":             "bench-model",
		"stream":            true,
		"stream_options":    map[string]bool{"include_usage": true},
		"max_tokens":        *tokens,
		"bench_interval_ms": *interval,
		"messages": []map[string]string{
			{"role": "system", "content": "You are a helpful assistant."},
			{"role": "user", "content": "Write a short poem about streaming proxies."},
		},
	})
	target := *root + "v1/chat/completions"
	started := time.Now()
	results := many(*concurrent, *spread, func(i int) []llmOutcome {
		var runs []llmOutcome
		for n := 0; n < *requests; n++ {
			if n > 0 {
				time.Sleep(time.Duration(*pause * float64(time.Millisecond)))
			}
			runs = append(runs, completion(client, target, body, *tokens))
		}
		return runs
	})
	var out llmResult
	var delays, ttfts, reusedTTFTs []float64
	for _, runs := range results {
		for _, o := range runs {
			out.Requests++
			out.TokensExpected += *tokens
			out.TokensReceived += o.tokens
			out.Corrupt += o.corrupt
			if o.err != nil {
				out.Failed++
				if out.FirstError == "" {
					out.FirstError = o.err.Error()
				}
				continue
			}
			if o.complete && o.tokens == *tokens && o.corrupt == 0 {
				out.Complete++
			}
			delays = append(delays, o.delays...)
			if o.tokens > 0 {
				ttfts = append(ttfts, o.ttft)
				if o.reused {
					out.Reused++
					reusedTTFTs = append(reusedTTFTs, o.ttft)
				}
			}
		}
	}
	out.DelayP50Ms = quantile(delays, 0.5)
	out.DelayP99Ms = quantile(delays, 0.99)
	out.TTFTP50Ms = quantile(ttfts, 0.5)
	out.TTFTP99Ms = quantile(ttfts, 0.99)
	out.TTFTReusedP50Ms = quantile(reusedTTFTs, 0.5)
	out.TTFTReusedP99Ms = quantile(reusedTTFTs, 0.99)
	out.Seconds = time.Since(started).Seconds()
	json.NewEncoder(os.Stdout).Encode(out)
}

// completion makes one streamed chat completion: the time to its first
// token, each token's delay (read time minus the time in its text), and
// whether it ended with the usage chunk and [DONE].
func completion(client *http.Client, target string, body []byte, tokens int) llmOutcome {
	var o llmOutcome
	request, _ := http.NewRequest("POST", target, bytes.NewReader(body))
	request.Header.Set("Content-Type", "application/json")
	request.Header.Set("Authorization", "Bearer sk-bench")
	request = request.WithContext(httptrace.WithClientTrace(request.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { o.reused = info.Reused },
	}))
	began := time.Now()
	response, err := client.Do(request)
	if err != nil {
		o.err = err
		return o
	}
	defer response.Body.Close()
	if response.StatusCode != 200 {
		o.err = fmt.Errorf("status %d", response.StatusCode)
		return o
	}
	reader := bufio.NewReaderSize(response.Body, 64*1024)
	usage := false
	for {
		line, err := reader.ReadSlice('\n')
		now := time.Now()
		if len(line) > 1 {
			switch {
			case bytes.HasPrefix(line, []byte("data: [DONE]")):
				o.complete = usage
			case bytes.Contains(line, []byte(`"usage":{`)):
				usage = true
			case bytes.Contains(line, []byte(`"content":" t`)):
				if sent, ok := tokenSentAt(line); ok {
					if o.tokens == 0 {
						o.ttft = float64(now.Sub(began).Nanoseconds()) / 1e6
					}
					o.delays = append(o.delays, float64(now.UnixNano()-sent)/1e6)
					o.tokens++
				} else {
					o.corrupt++
				}
			case bytes.Contains(line, []byte(`"finish_reason":"stop"`)):
			default:
				o.corrupt++
			}
		}
		if err == io.EOF {
			return o
		}
		if err != nil {
			o.err = err
			return o
		}
	}
}

// tokenSentAt reads NANOS out of a token's text, " tNANOS".
func tokenSentAt(line []byte) (int64, bool) {
	key := []byte(`"content":" t`)
	i := bytes.Index(line, key)
	if i < 0 {
		return 0, false
	}
	var v int64
	j := i + len(key)
	for ; j < len(line) && line[j] >= '0' && line[j] <= '9'; j++ {
		v = v*10 + int64(line[j]-'0')
	}
	return v, j > i+len(key) && j < len(line) && line[j] == '"'
}
