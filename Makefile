# souk: `make demo` (install, build the demo index, search it), `make test` (install, ruff, mypy, the tests) and
# `make test-fast` (ruff and the tests not marked slow, for the edit loop).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
SOUK   := $(VENV)/bin/souk
STAMP  := $(VENV)/.installed
SHARED ?= ../shared
DEMO   := .demo/index
PORT   ?= 8000

.PHONY: install browser demo demo-index lint test test-fast bench bench-fit bench-traffic clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench,milvus,ray]'
	@touch $(STAMP)

# Debian's chromium for the browser tests (playwright's own browser download does not work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null) \
	    || echo "warning: could not install chromium; browser tests will skip"; \
	  else echo "note: chromium missing and not root; browser tests will skip (sudo apt-get install chromium)"; fi; }

demo-index: install
	@if [ ! -f $(DEMO)/manifest.json ]; then \
	  $(SOUK) index souk/demo/pricewatch.json --index $(DEMO) --schema souk/demo/pricewatch.toml; fi

demo: demo-index
	$(SOUK) stats --index $(DEMO)
	$(SOUK) search --index $(DEMO) "chocolate biscuits" -k 5
	$(SOUK) search --index $(DEMO) "蛋糕" -k 5
	$(SOUK) search --index $(DEMO) "嘉頓 麵包" -k 5
	$(SOUK) search --index $(DEMO) "milk" --filter 'price<20' --filter 'category=Dairy / Soy products / Eggs' -k 5 --sort price
	$(SOUK) search --index $(DEMO) "instant noodles" --facet brand --facet supermarket --facet price -k 5
	$(SOUK) search --index $(DEMO) "choclate" -k 3
	@echo "serving the search page on http://127.0.0.1:$(PORT)/ (API docs at /docs); Ctrl-C stops"
	$(SOUK) serve --index $(DEMO) --port $(PORT)

# ruff (rules E, F, W; lines <= 120) and mypy, as configured in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check souk tests
	$(VENV)/bin/mypy souk

test: lint browser
	$(PY) -m pytest -q

# The edit loop: ruff, then every test not marked slow, stopping at the first failure (under 3 minutes).
test-fast: install
	$(VENV)/bin/ruff check souk tests
	$(PY) -m pytest -m "not slow" -x -q

bench: install
	@mkdir -p .bench
	$(SOUK) bench keyword --dataset $(SHARED)/data/scifact --split dev --repeat 5 --json | tee .bench/keyword-scifact.json
	$(SOUK) bench keyword --dataset $(SHARED)/data/homedepot --split dev --json | tee .bench/keyword-homedepot.json
	$(SOUK) bench index --dataset $(SHARED)/data/scifact --json | tee .bench/index-scifact.json
	$(SOUK) bench index --dataset $(SHARED)/data/homedepot --json | tee .bench/index-homedepot.json
	$(SOUK) bench encoder --dataset $(SHARED)/data/scifact --split dev --json | tee .bench/encoder-scifact.json
	$(SOUK) bench encoder --dataset $(SHARED)/data/scifact --split dev --isa avx2 --json | tee .bench/encoder-scifact-avx2.json
	$(SOUK) bench ann --dataset $(SHARED)/data/scifact --split dev --json | tee .bench/ann-scifact.json
	$(SOUK) bench spell --dataset $(SHARED)/data/homedepot --split dev --json | tee .bench/spell-homedepot.json
	$(SOUK) bench suggest --dataset $(SHARED)/data/homedepot --json | tee .bench/suggest-homedepot.json
	$(SOUK) bench rerank --dataset $(SHARED)/data/scifact --split dev --json | tee .bench/rerank-scifact.json
	$(MAKE) demo-index
	@test -f .bench/scifact-keyword/manifest.json || $(SOUK) index $(SHARED)/data/scifact --index .bench/scifact-keyword
	$(SOUK) bench cli --index .bench/scifact-keyword --query "protein folding" --json | tee .bench/cli-scifact.json
	$(SOUK) bench cli --index $(DEMO) --query "嘉頓 麵包" --json | tee .bench/cli-demo-zh.json
	$(SOUK) bench serve --index $(DEMO) --clients 16 --seconds 10 --json | tee .bench/serve-demo.json
	$(SOUK) bench serve --index $(DEMO) --clients 16 --seconds 10 --workers 2 --json | tee .bench/serve-demo-2workers.json
	$(MAKE) bench-fit
	$(MAKE) bench-traffic

# The learned stages as the issues' acceptance runs them: fit on train within a budget, evaluate `full` on dev
# (about 1.5 hours on 2 cores: indexing with vectors, three fits, the NER tagger); then the fit report's ablation
# of the recall ideas on copies of the fitted indexes (each idea on and off, held-out TRAIN and dev nDCG@10 in
# .bench/report-*/ablation.md; about 1 hour more on 2 idle cores).
bench-fit: install
	@mkdir -p .bench
	@test -f .bench/scifact/manifest.json || $(SOUK) index $(SHARED)/data/scifact --index .bench/scifact --vectors
	$(SOUK) fit --index .bench/scifact --train $(SHARED)/data/scifact --split train --dev-split dev --budget-min 20 --seed 13 --json | tee .bench/fit-scifact.json
	$(SOUK) eval --index .bench/scifact --dataset $(SHARED)/data/scifact --split dev --pipeline full --json | tee .bench/full-scifact.json
	@test -f .bench/homedepot/manifest.json || $(SOUK) index $(SHARED)/data/homedepot --index .bench/homedepot --vectors
	$(SOUK) fit --index .bench/homedepot --train $(SHARED)/data/homedepot --split train --dev-split dev --budget-min 30 --seed 13 --json | tee .bench/fit-homedepot.json
	$(SOUK) eval --index .bench/homedepot --dataset $(SHARED)/data/homedepot --split dev --pipeline full --json | tee .bench/full-homedepot.json
	@test -f .bench/qbqtc-vectors/manifest.json || $(SOUK) index $(SHARED)/data/qbqtc --index .bench/qbqtc-vectors --vectors
	$(SOUK) fit --index .bench/qbqtc-vectors --train $(SHARED)/data/qbqtc --split train --dev-split dev --budget-min 20 --seed 13 --json | tee .bench/fit-qbqtc.json
	$(SOUK) eval --index .bench/qbqtc-vectors --dataset $(SHARED)/data/qbqtc --split dev --pipeline full --json | tee .bench/full-qbqtc.json
	$(SOUK) fit --index .bench/scifact --train $(SHARED)/data/scifact --split train --dev-split dev --stages dense,fusion,ltr --budget-min 8 --seed 13 --report .bench/report-scifact --ablate dense.prf,fusion.stacking,ltr.ensemble --report-pipelines hybrid,full --json | tee .bench/ablation-scifact.json
	$(SOUK) fit --index .bench/homedepot --train $(SHARED)/data/homedepot --split train --dev-split dev --stages dense,fusion --budget-min 8 --seed 13 --report .bench/report-homedepot --ablate dense.prf,fusion.stacking --report-pipelines hybrid,full --json | tee .bench/ablation-homedepot.json
	$(SOUK) fit --index .bench/qbqtc-vectors --train $(SHARED)/data/qbqtc --split train --dev-split dev --stages wordvec,interact,ltr --budget-min 8 --seed 13 --report .bench/report-qbqtc --ablate wordvec.latin_grams --report-pipelines hybrid,full --json | tee .bench/ablation-qbqtc.json
	$(SOUK) ner train --data $(SHARED)/data/taobao-ner/train.jsonl --dev $(SHARED)/data/taobao-ner/dev.jsonl --out .bench/ner --json | tee .bench/ner-train.json
	$(SOUK) ner eval --model .bench/ner --data $(SHARED)/data/taobao-ner/dev.jsonl --json | tee .bench/ner-dev.json

# Learning from the shop's own traffic (issue 19): 20,000 simulated shoppers on homedepot TRAIN queries through a
# real `souk serve`, ltr fitted from the event log alone and from the judged train split, both evaluated on dev next
# to BM25; then BM25 vs the click-fitted ltr over simulated dev shoppers: 3,000 interleaved searches and 3,000
# searches split A/B, then both again over shoppers with several searches each, and the searches each design needs for
# 80% power computed exactly from the click model (`souk bench power`); `souk bench traffic` prints the table (about
# 45 minutes on 2 busy cores).
TRAFFIC := .bench/traffic
TPORT   ?= 8797
# train shoppers who clicked nothing on page 1 open page 2 with this chance (`souk simulate --next-page`; 0: page 1
# only, the benchmark before 2026-12-06); the interleaving and A/B steps keep page-1 shoppers
NEXT_PAGE ?= 0.3
# then the same pair over one population of shoppers (the same seed for the interleaved and the A/B run: the same
# shoppers, queries and engagement), A/B split by shopper as A/B tests bucket users. PER_SHOPPER: searches a shopper
# makes; 3 because web logs show 2-3 queries a session (Silverstein et al. 1999: 2.02; Jansen et al. 2000: 2.8), and a
# test that buckets a user for weeks sees more (so more clustering than here). ENGAGEMENT: Beta(A,B) of a shopper's
# examination scale; 1,1 (uniform) because nothing is known of a shop's spread: every level equally likely
PER_SHOPPER ?= 3
ENGAGEMENT  ?= 1,1
bench-traffic: install
	@mkdir -p $(TRAFFIC)
	rm -rf $(TRAFFIC)/homedepot
	$(SOUK) index $(SHARED)/data/homedepot --index $(TRAFFIC)/homedepot
	$(SOUK) serve --index $(TRAFFIC)/homedepot --port $(TPORT) & pid=$$!; \
	  for i in $$(seq 120); do curl -sf http://127.0.0.1:$(TPORT)/health >/dev/null && break; sleep 1; done; \
	  $(SOUK) simulate --dataset $(SHARED)/data/homedepot --split train --searches 20000 --url http://127.0.0.1:$(TPORT) --seed 13 --next-page $(NEXT_PAGE) --json | tee $(TRAFFIC)/simulate-train.json; \
	  kill $$pid; wait $$pid || true
	$(SOUK) eval --index $(TRAFFIC)/homedepot --dataset $(SHARED)/data/homedepot --split dev --pipeline bm25 --json | tee $(TRAFFIC)/eval-bm25.json
	$(SOUK) fit --index $(TRAFFIC)/homedepot --events --stages ltr --budget-min 10 --json | tee $(TRAFFIC)/fit-events.json
	$(SOUK) eval --index $(TRAFFIC)/homedepot --dataset $(SHARED)/data/homedepot --split dev --pipeline ltr --json | tee $(TRAFFIC)/eval-ltr-events.json
	$(SOUK) fit --index $(TRAFFIC)/homedepot --train $(SHARED)/data/homedepot --split train --stages ltr --budget-min 10 --json | tee $(TRAFFIC)/fit-judged.json
	$(SOUK) eval --index $(TRAFFIC)/homedepot --dataset $(SHARED)/data/homedepot --split dev --pipeline ltr --json | tee $(TRAFFIC)/eval-ltr-judged.json
	$(SOUK) models --index $(TRAFFIC)/homedepot --activate ltr-1
	$(SOUK) serve --index $(TRAFFIC)/homedepot --port $(TPORT) --interleave bm25,ltr & pid=$$!; \
	  for i in $$(seq 120); do curl -sf http://127.0.0.1:$(TPORT)/health >/dev/null && break; sleep 1; done; \
	  since=$$(date +%s); \
	  $(SOUK) simulate --dataset $(SHARED)/data/homedepot --split dev --searches 3000 --url http://127.0.0.1:$(TPORT) --seed 7 --json | tee $(TRAFFIC)/simulate-interleave.json; \
	  $(SOUK) simulate --dataset $(SHARED)/data/homedepot --split dev --searches 3000 --url http://127.0.0.1:$(TPORT) --seed 8 --ab bm25,ltr --json | tee $(TRAFFIC)/simulate-ab.json; \
	  kill $$pid; wait $$pid || true; \
	  $(SOUK) experiments --index $(TRAFFIC)/homedepot --since $$since --experiment bm25,ltr --ab bm25,ltr --json | tee $(TRAFFIC)/experiments.json
	$(SOUK) serve --index $(TRAFFIC)/homedepot --port $(TPORT) --interleave bm25,ltr & pid=$$!; \
	  for i in $$(seq 120); do curl -sf http://127.0.0.1:$(TPORT)/health >/dev/null && break; sleep 1; done; \
	  since=$$(date +%s); \
	  $(SOUK) simulate --dataset $(SHARED)/data/homedepot --split dev --searches 3000 --url http://127.0.0.1:$(TPORT) --seed 7 --per-shopper $(PER_SHOPPER) --engagement $(ENGAGEMENT) --index $(TRAFFIC)/homedepot --json | tee $(TRAFFIC)/simulate-interleave-shoppers.json; \
	  $(SOUK) simulate --dataset $(SHARED)/data/homedepot --split dev --searches 3000 --url http://127.0.0.1:$(TPORT) --seed 7 --per-shopper $(PER_SHOPPER) --engagement $(ENGAGEMENT) --ab bm25,ltr --json | tee $(TRAFFIC)/simulate-ab-shoppers.json; \
	  kill $$pid; wait $$pid || true; \
	  $(SOUK) experiments --index $(TRAFFIC)/homedepot --since $$since --experiment bm25,ltr --ab bm25,ltr --json | tee $(TRAFFIC)/experiments-shoppers.json
	$(SOUK) bench power --index $(TRAFFIC)/homedepot --dataset $(SHARED)/data/homedepot --split dev --pipelines bm25,ltr --per-shopper 1 --json | tee $(TRAFFIC)/power.json
	$(SOUK) bench power --index $(TRAFFIC)/homedepot --dataset $(SHARED)/data/homedepot --split dev --pipelines bm25,ltr --per-shopper 1,$(PER_SHOPPER),10,30 --engagement $(ENGAGEMENT) --json | tee $(TRAFFIC)/power-shoppers.json
	$(SOUK) bench traffic --dir $(TRAFFIC) --json | tee $(TRAFFIC)/result.json
	$(SOUK) bench traffic --dir $(TRAFFIC)

clean:
	rm -rf $(VENV) .demo .bench
