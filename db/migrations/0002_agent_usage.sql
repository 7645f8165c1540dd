ALTER TABLE `runs` ADD `model_requests` integer;--> statement-breakpoint
ALTER TABLE `runs` ADD `input_tokens` integer;--> statement-breakpoint
ALTER TABLE `runs` ADD `output_tokens` integer;--> statement-breakpoint
ALTER TABLE `runs` ADD `cost_usd` real;