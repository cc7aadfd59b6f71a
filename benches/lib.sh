# Shared by the benchmark scripts (sourced, not run).

# fio_sync DIR: the disk's write + fdatasync rate on DIR's file system (4 KiB, iodepth 1),
# printed as `fio_sync_iops N` and `fio_sync_ms M` lines (one write + fdatasync cycle;
# fio's clat leaves the sync out).
fio_sync() {
  local dir=$1
  fio --name=sync4k --directory="$dir" --rw=write --bs=4k --iodepth=1 --direct=1 --fdatasync=1 \
      --ioengine=sync --size=256M --runtime=10 --time_based --output-format=json > "$dir/fio.json"
  python3 - "$dir/fio.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print("fio_sync_iops", j["iops"])
print("fio_sync_ms", 1000.0 / j["iops"])
PY
  rm -f "$dir"/sync4k.* "$dir/fio.json"
}
