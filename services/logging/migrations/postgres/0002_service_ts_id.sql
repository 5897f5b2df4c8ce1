-- Newest-first pages order by (ts, id): with `id` in the service index a service
-- filter reads its newest rows in order and stops after a page, instead of sorting
-- every row of the time range (bench/logging, query latency).
DROP INDEX log_records_service_ts;
CREATE INDEX log_records_service_ts ON log_records (service, ts, id);
