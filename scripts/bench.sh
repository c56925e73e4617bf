#!/usr/bin/env bash
# Benchmark Gatehouse's proxy against nginx as a plain reverse proxy.
#
# Each proxy runs pinned to one core in front of the same tiny upstream
# (scripts/benchupstream); wrk drives it from another core. For every case we
# report throughput, p99 latency and -- the number the bars are about -- the
# CPU time the proxy process spent per request, compared with nginx's.
# See scripts/README.md for the method.
#
# Environment:
#   BENCH_SECONDS=15        measured wrk run length per case
#   BENCH_WARMUP=3          warm-up wrk run length per case
#   BENCH_CONNECTIONS=50    wrk -c
#   BENCH_ONLY_NGINX=1      skip the Gatehouse rows (no Gatehouse build)
#   BENCH_GATEHOUSE_BIN=P   benchmark the binary P instead of building
#                           bin/gatehouse (e.g. an older build to compare)
#   BENCH_PROXY_CPU=1       core for nginx / Gatehouse
#   BENCH_CLIENT_CPU=0      core for wrk
#   BENCH_UPSTREAM_CPU=     core for the upstream (default: 2 if the machine
#                           has more than 2 cores, else the client core)
#   BENCH_OUT=FILE          also write the markdown report to FILE
#   BENCH_TSV=FILE          also write the rows as tab-separated name, req/s,
#                           p99, CPU µs/req (read by scripts/benchscale)
#   BENCH_KEEP_TMP=1        keep the temp dir (logs, configs) for inspection
#
# Exit code: 0 when every case ran with only 2xx responses; non-zero when a
# step failed. The PASS/OVER verdicts are informational and never fail it.
set -euo pipefail

BENCH_SECONDS=${BENCH_SECONDS:-15}
BENCH_WARMUP=${BENCH_WARMUP:-3}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-50}
BENCH_ONLY_NGINX=${BENCH_ONLY_NGINX:-0}
BENCH_OUT=${BENCH_OUT:-}
BENCH_KEEP_TMP=${BENCH_KEEP_TMP:-0}
BENCH_GATEHOUSE_BIN=${BENCH_GATEHOUSE_BIN:-}
BENCH_TSV=${BENCH_TSV:-}

# Bars from issue 8: Gatehouse CPU µs/request relative to nginx's, and the
# p99 latency of the plain case relative to nginx's.
BAR_PLAIN=1.2
BAR_PLUGINS=1.4
BAR_P99=1.2

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools ----
PATH=$PATH:/usr/sbin:/sbin
if ! command -v nginx >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1; then
	log "installing nginx and wrk"
	SUDO=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null 2>&1 || die "nginx/wrk missing and not root (no sudo)"
		SUDO=(sudo)
	fi
	"${SUDO[@]}" apt-get update
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx wrk
fi
for tool in nginx wrk curl taskset getconf awk go; do
	command -v "$tool" >/dev/null 2>&1 || die "required tool not found: $tool"
done

CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
if ((NCPU >= 2)); then
	PROXY_CPU=${BENCH_PROXY_CPU:-1}
	CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
	if ((NCPU > 2)); then
		UPSTREAM_CPU=${BENCH_UPSTREAM_CPU:-2}
	else
		UPSTREAM_CPU=${BENCH_UPSTREAM_CPU:-$CLIENT_CPU}
	fi
else
	log "WARNING: only $NCPU CPU; running unpinned, numbers are not meaningful"
	PROXY_CPU=${BENCH_PROXY_CPU:-}
	CLIENT_CPU=${BENCH_CLIENT_CPU:-}
	UPSTREAM_CPU=${BENCH_UPSTREAM_CPU:-}
fi

# Command prefixes that pin a process to its core. Arrays, not a function, so
# that "${PIN_X[@]}" cmd & leaves $! = the pid of cmd itself (taskset execs).
PIN_PROXY=() PIN_CLIENT=() PIN_UPSTREAM=()
[[ -n $PROXY_CPU ]] && PIN_PROXY=(taskset -c "$PROXY_CPU")
[[ -n $CLIENT_CPU ]] && PIN_CLIENT=(taskset -c "$CLIENT_CPU")
[[ -n $UPSTREAM_CPU ]] && PIN_UPSTREAM=(taskset -c "$UPSTREAM_CPU")

# ------------------------------------------------------ temp + cleanup ----
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")
UPSTREAM_PID=
NGINX_PID=
GATEHOUSE_PID=
WRK_PID=

# stop_pid PID NAME: SIGTERM, wait up to 5 s, then SIGKILL.
stop_pid() {
	local pid=$1 name=$2 i
	[[ -n $pid ]] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name ($pid) did not stop in 5s; killing"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	set +e
	stop_pid "$WRK_PID" wrk
	stop_pid "$GATEHOUSE_PID" gatehouse
	if [[ -n $NGINX_PID ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
		timeout 5 nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" -s stop 2>/dev/null
		stop_pid "$NGINX_PID" nginx
	fi
	stop_pid "$UPSTREAM_PID" upstream
	if [[ $BENCH_KEEP_TMP == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- ports ----
# free_port: print a loopback TCP port that no socket uses (listening or
# connected, per /proc/net/tcp{,6}) and that was not handed out before in
# this run. Ports come from below the kernel's ephemeral range, so that the
# many client connections of a benchmark cannot take one between our check
# and the server's bind.
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
PORT_LO=10000
PORT_HI=$((EPHEMERAL_LOW > PORT_LO + 1000 ? EPHEMERAL_LOW - 1 : 30000))
USED_PORTS=" "
free_port() {
	local i p inuse=" " hex
	# Local ports of all TCP sockets, in hex (column 2 is ADDR:PORT).
	for hex in $(awk 'FNR > 1 { n = split($2, a, ":"); print a[n] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u); do
		inuse+="$((16#$hex)) "
	done
	for ((i = 0; i < 500; i++)); do
		p=$((PORT_LO + (RANDOM * 32768 + RANDOM) % (PORT_HI - PORT_LO + 1)))
		[[ $USED_PORTS == *" $p "* || $inuse == *" $p "* ]] && continue
		echo "$p"
		return 0
	done
	die "no free port found"
}
# Assign in the main shell (not in $(...)) so USED_PORTS persists.
next_port() {
	local -n out=$1
	local f
	f=$(free_port)
	USED_PORTS+="$f "
	out=$f
}

# wait_http URL [CURL_ARGS...]: wait up to 30 s for a 200 from URL.
wait_http() {
	local url=$1 i code
	shift
	for ((i = 0; i < 300; i++)); do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$@" "$url" || true)
		[[ $code == 200 ]] && return 0
		sleep 0.1
	done
	return 1
}

# ----------------------------------------------------- CPU accounting ----
# cpu_ticks PID...: sum of utime+stime (clock ticks) of the given processes,
# all threads included. /proc/PID/stat fields 14 and 15; the comm field (2)
# may contain spaces, so split after its closing parenthesis, where field 3
# is index 0 and fields 14/15 are indexes 11/12.
cpu_ticks() {
	local pid stat rest sum=0
	local -a f
	for pid in "$@"; do
		stat=$(<"/proc/$pid/stat") || die "process $pid is gone"
		rest=${stat##*) }
		read -ra f <<<"$rest"
		sum=$((sum + f[11] + f[12]))
	done
	echo "$sum"
}

# core_ticks CPU: "BUSY TOTAL IRQ" clock ticks of core CPU from /proc/stat
# (busy = everything but idle and iowait; irq = hard + soft interrupts), or
# of all cores if CPU is empty.
core_ticks() {
	awk -v c="cpu$1" '$1 == c {
		t = $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9
		print t - $5 - $6, t, $7 + $8
	}' /proc/stat
}

# children PID: the pids whose parent is PID (ppid is field 4 of stat).
children() {
	local parent=$1 st rest out=""
	local -a f
	for st in /proc/[0-9]*/stat; do
		{ rest=$(<"$st"); } 2>/dev/null || continue
		rest=${rest##*) }
		read -ra f <<<"$rest"
		if [[ ${f[1]} == "$parent" ]]; then
			st=${st#/proc/}
			out+="${st%/stat} "
		fi
	done
	echo "$out"
}

# ------------------------------------------------------------ preflight ----
# Other load on this machine distorts every number; say so up front.
read -r pb0 pt0 _ <<<"$(core_ticks "")"
sleep 1
read -r pb1 pt1 _ <<<"$(core_ticks "")"
BUSY=$(awk -v b="$((pb1 - pb0))" -v t="$((pt1 - pt0))" 'BEGIN {printf "%.0f", (t > 0 ? b / t * 100 : 0)}')
if ((BUSY > 10)); then
	log "WARNING: the machine is already ${BUSY}% busy before the benchmark; results will be noisy"
fi

# ---------------------------------------------------------------- build ----
mkdir -p bin
log "building upstream"
go build -o "$TMP/benchupstream" ./scripts/benchupstream
GATEHOUSE=$BENCH_GATEHOUSE_BIN
if [[ $BENCH_ONLY_NGINX != 1 && -z $GATEHOUSE ]]; then
	log "building bin/gatehouse"
	go build -o bin/gatehouse ./cmd/gatehouse || die "go build ./cmd/gatehouse failed (use BENCH_ONLY_NGINX=1 for the nginx row only)"
	GATEHOUSE=bin/gatehouse
fi

# ------------------------------------------------------------- upstream ----
next_port UP_PORT
log "starting upstream on 127.0.0.1:$UP_PORT (cpu ${UPSTREAM_CPU:-any})"
"${PIN_UPSTREAM[@]}" env GOMAXPROCS=1 "$TMP/benchupstream" -listen "127.0.0.1:$UP_PORT" >"$TMP/upstream.log" 2>&1 &
UPSTREAM_PID=$!
wait_http "http://127.0.0.1:$UP_PORT/" || die "upstream did not come up: $(cat "$TMP/upstream.log")"

# --------------------------------------------------------------- cases ----
ROW_NAME=() ROW_RPS=() ROW_P99=() ROW_US=() ROW_REQS=() ROW_UTIL=() ROW_IRQ=() ROW_BAR=() ROW_NOTE=()
FAILED=0

# run_wrk OUT ARGS...: run wrk on the client core, output to OUT. In the
# background plus wait, so that a signal to this script is handled at once
# (bash defers traps until a foreground child exits) and cleanup can stop it.
run_wrk() {
	local out=$1 rc=0
	shift
	"${PIN_CLIENT[@]}" wrk "$@" >"$out" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID" || rc=$?
	WRK_PID=
	return "$rc"
}

# run_case NAME BAR URL PIDS [WRK_ARGS...]
#   PIDS is a space-separated list of the proxy's processes; BAR is the
#   allowed ratio to nginx, or "-" for the baseline.
run_case() {
	local name=$1 bar=$2 url=$3 pids=$4
	shift 4
	local -a pidv
	read -ra pidv <<<"$pids"
	local out="$TMP/wrk-${#ROW_NAME[@]}.txt"

	log "[$name] warm-up ${BENCH_WARMUP}s: $url"
	run_wrk "$TMP/warmup.txt" -t1 -c"$BENCH_CONNECTIONS" -d"${BENCH_WARMUP}s" "$@" "$url" ||
		die "[$name] warm-up wrk failed: $(cat "$TMP/warmup.txt")"

	log "[$name] measured ${BENCH_SECONDS}s"
	local t0 t1
	local c0 c1
	c0=$(core_ticks "$PROXY_CPU")
	t0=$(cpu_ticks "${pidv[@]}")
	run_wrk "$out" -t1 -c"$BENCH_CONNECTIONS" -d"${BENCH_SECONDS}s" --latency "$@" "$url" ||
		die "[$name] wrk failed: $(cat "$out")"
	t1=$(cpu_ticks "${pidv[@]}")
	c1=$(core_ticks "$PROXY_CPU")
	sed 's/^/    /' "$out" >&2

	local rps reqs p99 non2xx sockerr note=""
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
	reqs=$(awk '/ requests in / {print $1}' "$out")
	p99=$(awk '$1 == "99%" {print $2}' "$out")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
	sockerr=$(grep -o 'Socket errors:.*' "$out" || true)
	[[ -n $rps && -n $reqs && -n $p99 && $reqs -gt 0 ]] || die "[$name] could not parse wrk output"
	if [[ -n $non2xx ]]; then
		note+="${non2xx} non-2xx responses; "
		FAILED=1
	fi
	[[ -n $sockerr ]] && note+="${sockerr}; "

	local dt=$((t1 - t0)) cb0 ct0 ci0 cb1 ct1 ci1 ct ci util other
	read -r cb0 ct0 ci0 <<<"$c0"
	read -r cb1 ct1 ci1 <<<"$c1"
	ct=$((ct1 - ct0)) ci=$((ci1 - ci0))
	# Share of the proxy core used by the proxy, and by anything else but
	# interrupts (other processes): the latter should be near 0. Interrupt
	# time on the proxy core is mostly loopback TCP work for the proxy's own
	# sends, which the kernel charges to no process; it is reported apart.
	util=$(awk -v t="$dt" -v ct="$ct" 'BEGIN {printf "%.0f", (ct > 0 ? t / ct * 100 : 0)}')
	other=$(awk -v t="$dt" -v i="$ci" -v cb="$((cb1 - cb0))" -v ct="$ct" 'BEGIN {o = (ct > 0 ? (cb - i - t) / ct * 100 : 0); printf "%.0f", (o < 0 ? 0 : o)}')
	if [[ -n $PROXY_CPU ]] && ((other > 10)); then
		note+="${other}% of the proxy core went to other processes: noisy; "
		log "WARNING: [$name] ${other}% of core $PROXY_CPU was used by other processes"
	fi
	# Saturated: the proxy plus the interrupt work it causes fill its core.
	local sat
	sat=$(awk -v t="$dt" -v i="$ci" -v ct="$ct" 'BEGIN {printf "%.0f", (ct > 0 ? (t + i) / ct * 100 : 0)}')
	if ((sat < 85)); then
		note+="proxy not saturated (proxy + interrupts used ${sat}% of its core): client, upstream or other processes limited the rate; "
	fi
	ROW_NAME+=("$name")
	ROW_BAR+=("$bar")
	ROW_RPS+=("$rps")
	ROW_P99+=("$p99")
	ROW_REQS+=("$reqs")
	ROW_US+=("$(awk -v t="$dt" -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')")
	ROW_UTIL+=("${util}%")
	if [[ -n $PROXY_CPU ]]; then
		ROW_IRQ+=("$(awk -v i="$ci" -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", i / hz * 1e6 / n}')")
	else
		ROW_IRQ+=("?")
	fi
	ROW_NOTE+=("$note")
	log "[$name] $rps req/s, p99 $p99, $(((dt * 1000) / CLK_TCK)) ms CPU for $reqs requests"
}

# ---------------------------------------------------------------- nginx ----
next_port NGINX_PORT
mkdir -p "$TMP/nginx/logs"
NGINX_USER=""
[[ $(id -u) -eq 0 ]] && NGINX_USER="user root;"
cat >"$TMP/nginx/nginx.conf" <<EOF
$NGINX_USER
worker_processes 1;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path       $TMP/nginx/proxy_temp;
    fastcgi_temp_path     $TMP/nginx/fastcgi_temp;
    uwsgi_temp_path       $TMP/nginx/uwsgi_temp;
    scgi_temp_path        $TMP/nginx/scgi_temp;

    # wrk keeps its connections for the whole run; so does Gatehouse.
    keepalive_requests 1000000;

    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }

    server {
        listen 127.0.0.1:$NGINX_PORT;

        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
NGINX_ARGS=(-p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log")
nginx "${NGINX_ARGS[@]}" -t >"$TMP/nginx-t.log" 2>&1 || die "nginx config test failed: $(cat "$TMP/nginx-t.log")"
log "starting nginx on 127.0.0.1:$NGINX_PORT (cpu ${PROXY_CPU:-any})"
"${PIN_PROXY[@]}" nginx "${NGINX_ARGS[@]}" >"$TMP/nginx/stdout.log" 2>&1 &
NGINX_PID=$!
wait_http "http://127.0.0.1:$NGINX_PORT/plain" || die "nginx did not come up: $(cat "$TMP/nginx/error.log")"
NGINX_WORKERS=$(children "$NGINX_PID")
[[ -n $NGINX_WORKERS ]] || die "no nginx worker process found"
log "nginx master $NGINX_PID, workers $NGINX_WORKERS"

run_case "nginx plain proxy" - "http://127.0.0.1:$NGINX_PORT/plain" "$NGINX_PID $NGINX_WORKERS"

timeout 5 nginx "${NGINX_ARGS[@]}" -s stop 2>/dev/null || true
stop_pid "$NGINX_PID" nginx
NGINX_PID=

# ------------------------------------------------------------ gatehouse ----
# admin_post PATH ARGS...: POST form data to the Admin API. Retries while the
# node is not ready (connection refused / 5xx); 201, 200 and 409 (left over
# from an earlier retry) count as success.
admin_post() {
	local path=$1 i code
	shift
	for ((i = 0; i < 50; i++)); do
		code=$(curl -s -o "$TMP/admin-resp.json" -w '%{http_code}' --max-time 5 \
			-X POST "http://127.0.0.1:$ADMIN_PORT$path" "$@" || true)
		case $code in
		200 | 201 | 409) return 0 ;;
		000 | 5??) sleep 0.2 ;;
		*) die "POST $path -> $code: $(cat "$TMP/admin-resp.json")" ;;
		esac
	done
	die "POST $path kept failing (last $code): $(cat "$TMP/admin-resp.json" 2>/dev/null)"
}

if [[ $BENCH_ONLY_NGINX != 1 ]]; then
	next_port PROXY_PORT
	next_port ADMIN_PORT
	next_port STATUS_PORT
	next_port CLUSTER_PORT
	log "starting gatehouse: proxy $PROXY_PORT admin $ADMIN_PORT (cpu ${PROXY_CPU:-any}, GOMAXPROCS=1)"
	"${PIN_PROXY[@]}" env GOMAXPROCS=1 "$GATEHOUSE" run \
		--data-dir "$TMP/gh" \
		--node-id bench \
		--proxy-listen "127.0.0.1:$PROXY_PORT" \
		--admin-listen "127.0.0.1:$ADMIN_PORT" \
		--status-listen "127.0.0.1:$STATUS_PORT" \
		--cluster-listen "127.0.0.1:$CLUSTER_PORT" \
		>"$TMP/gatehouse.log" 2>&1 &
	GATEHOUSE_PID=$!
	wait_http "http://127.0.0.1:$ADMIN_PORT/" || die "gatehouse admin API did not come up: $(tail -n 30 "$TMP/gatehouse.log")"

	UP_URL="http://127.0.0.1:$UP_PORT"
	admin_post /services -d name=bench -d "url=$UP_URL"
	admin_post /services/bench/routes -d name=plain -d 'paths[]=/plain'
	admin_post /services -d name=bench-plugins -d "url=$UP_URL"
	admin_post /services/bench-plugins/routes -d name=plugins -d 'paths[]=/plugins'
	admin_post /routes/plugins/plugins -d name=key-auth
	admin_post /routes/plugins/plugins -d name=rate-limiting -d config.hour=1000000000 -d config.policy=local
	admin_post /consumers -d username=bench
	admin_post /consumers/bench/key-auth -d key=benchkey

	GH="http://127.0.0.1:$PROXY_PORT"
	wait_http "$GH/plain" || die "gatehouse /plain never answered 200"
	wait_http "$GH/plugins" -H 'apikey: benchkey' || die "gatehouse /plugins (with apikey) never answered 200"
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$GH/plugins" || true)
	[[ $code == 401 ]] || log "WARNING: /plugins without apikey answered $code, expected 401 (key-auth not enforced?)"
	hdr=$(curl -s -D - -o /dev/null --max-time 2 -H 'apikey: benchkey' "$GH/plugins" || true)
	grep -qi '^x-ratelimit-limit-hour' <<<"$hdr" ||
		log "WARNING: /plugins response has no X-RateLimit-Limit-Hour header (rate-limiting not applied?)"

	run_case "gatehouse no plugins" "$BAR_PLAIN" "$GH/plain" "$GATEHOUSE_PID"
	run_case "gatehouse key-auth + rate-limiting" "$BAR_PLUGINS" "$GH/plugins" "$GATEHOUSE_PID" -H 'apikey: benchkey'
fi

# --------------------------------------------------------------- report ----
# to_ms turns wrk's 850.00us / 1.23ms / 1.02s into milliseconds.
to_ms() {
	awk -v d="$1" 'BEGIN {
		if (d ~ /us$/) { sub(/us$/, "", d); print d / 1000 }
		else if (d ~ /ms$/) { sub(/ms$/, "", d); print d + 0 }
		else if (d ~ /s$/) { sub(/s$/, "", d); print d * 1000 }
		else print d
	}'
}

report() {
	local base=${ROW_US[0]} i ratio verdict
	echo
	echo "## Gatehouse vs nginx, one core each (wrk -t1 -c$BENCH_CONNECTIONS, ${BENCH_SECONDS}s)"
	echo
	echo "| case | req/s | p99 | CPU µs/req | × nginx |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	for i in "${!ROW_NAME[@]}"; do
		ratio=$(awk -v a="${ROW_US[$i]}" -v b="$base" 'BEGIN {printf "%.2f×", a / b}')
		printf '| %s | %.0f | %s | %s | %s |\n' "${ROW_NAME[$i]}" "${ROW_RPS[$i]}" "${ROW_P99[$i]}" "${ROW_US[$i]}" "$ratio"
	done
	echo
	echo "Bars (CPU µs/req relative to nginx; informational):"
	echo
	for i in "${!ROW_NAME[@]}"; do
		[[ ${ROW_BAR[$i]} == - ]] && continue
		ratio=$(awk -v a="${ROW_US[$i]}" -v b="$base" 'BEGIN {printf "%.2f", a / b}')
		verdict=$(awk -v r="$ratio" -v m="${ROW_BAR[$i]}" 'BEGIN {print (r <= m) ? "PASS" : "OVER"}')
		echo "- ${ROW_NAME[$i]}: ${ratio}× (bar ≤ ${ROW_BAR[$i]}×) **$verdict**"
	done
	if ((${#ROW_NAME[@]} > 1)); then
		ratio=$(awk -v a="$(to_ms "${ROW_P99[1]}")" -v b="$(to_ms "${ROW_P99[0]}")" 'BEGIN {printf "%.2f", a / b}')
		verdict=$(awk -v r="$ratio" -v m="$BAR_P99" 'BEGIN {print (r <= m) ? "PASS" : "OVER"}')
		echo "- ${ROW_NAME[1]}, p99: ${ratio}× nginx's (bar ≤ ${BAR_P99}×) **$verdict**"
	fi
	[[ $BENCH_ONLY_NGINX == 1 ]] && echo "- (BENCH_ONLY_NGINX=1: Gatehouse rows skipped)"
	echo
	echo "Details:"
	echo
	for i in "${!ROW_NAME[@]}"; do
		echo "- ${ROW_NAME[$i]}: ${ROW_REQS[$i]} requests, proxy used ${ROW_UTIL[$i]} of its core, interrupts on that core ${ROW_IRQ[$i]} µs/req${ROW_NOTE[$i]:+; ${ROW_NOTE[$i]%; }}"
	done
	echo "- machine busy before start: ${BUSY}% of all cores"
	echo "- cores: proxy ${PROXY_CPU:-any}, wrk ${CLIENT_CPU:-any}, upstream ${UPSTREAM_CPU:-any} (of $NCPU); $(nginx -v 2>&1); $(go version)"
}

if [[ -n $BENCH_TSV ]]; then
	for i in "${!ROW_NAME[@]}"; do
		printf '%s\t%s\t%s\t%s\n' "${ROW_NAME[$i]}" "${ROW_RPS[$i]}" "${ROW_P99[$i]}" "${ROW_US[$i]}"
	done >"$BENCH_TSV"
fi

if [[ -n $BENCH_OUT ]]; then
	report | tee "$BENCH_OUT"
else
	report
fi

if ((FAILED)); then
	log "some case saw non-2xx responses; its numbers are not valid"
	exit 1
fi
