-- Notebook chart "Top 3 items": bought in the most transactions.
SELECT rank, item_name, manufacturer_name, times_bought, units_sold, revenue
FROM bi.top_items_by_purchases
ORDER BY rank
