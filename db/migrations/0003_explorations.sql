CREATE TABLE `exploration_branches` (
	`exploration_id` text NOT NULL,
	`branch_id` text NOT NULL,
	`level` integer NOT NULL,
	`prompt` text NOT NULL,
	`run_id` text,
	`score_run_id` text,
	`passed` integer,
	`score` real,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	PRIMARY KEY(`exploration_id`, `branch_id`),
	FOREIGN KEY (`exploration_id`) REFERENCES `explorations`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `explorations` (
	`id` text PRIMARY KEY NOT NULL,
	`session_id` text NOT NULL,
	`user_id` text NOT NULL,
	`from_snapshot_id` text NOT NULL,
	`status` text NOT NULL,
	`prompts` text NOT NULL,
	`samples` integer NOT NULL,
	`score_command` text NOT NULL,
	`depth` integer NOT NULL,
	`parallelism` integer NOT NULL,
	`promote` integer NOT NULL,
	`best_branch_id` text,
	`error` text,
	`created_at` integer DEFAULT (unixepoch('subsec') * 1000) NOT NULL,
	`finished_at` integer,
	FOREIGN KEY (`session_id`) REFERENCES `sessions`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `explorations_session_idx` ON `explorations` (`session_id`);