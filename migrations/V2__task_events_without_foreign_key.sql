-- Events no longer reference their task through a foreign key. The key's check is a query per
-- inserted event, planned once per connection and kept: on a table that was empty when it was
-- planned (a fresh deployment, or a TRUNCATE), PostgreSQL kept a plan that scans a whole
-- (tenant, id) index for every event, so a million-row import in one transaction slowed from
-- seconds to minutes per chunk as its own rows piled up. Every event is written by the statement
-- that creates or changes its task, under that task's row lock, and retention deletes a task's
-- events in the statement that deletes the task, so the key guarded nothing those statements do
-- not already guarantee.
ALTER TABLE tms.task_events DROP CONSTRAINT task_events_task_id_fkey;
