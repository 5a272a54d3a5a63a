-- A small data set in InterCode's format, for tests: two databases, a MySQL dump
-- that starts the way InterCode's dumps do (a test user for the MySQL container).
CREATE USER 'admin'@'%' IDENTIFIED BY 'admin';
GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%';
FLUSH PRIVILEGES;

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!50503 SET NAMES utf8mb4 */;
SET FOREIGN_KEY_CHECKS = 0;

CREATE DATABASE IF NOT EXISTS `library` /*!40100 DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci */;
USE `library`;

--
-- Table structure for table `author`
--

DROP TABLE IF EXISTS `author`;
CREATE TABLE `author` (
  `author_id` int NOT NULL AUTO_INCREMENT,
  `name` varchar(80) COLLATE utf8mb4_general_ci NOT NULL,
  `born` date DEFAULT NULL,
  `country` text COLLATE utf8mb4_general_ci,
  PRIMARY KEY (`author_id`)
) ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

LOCK TABLES `author` WRITE;
/*!40000 ALTER TABLE `author` DISABLE KEYS */;
INSERT INTO `author` VALUES (1,'Ursula K. Le Guin','1929-10-21','United States'),(2,"Flann O'Brien",'1911-10-05','Ireland'),(3,'Wisława Szymborska','1923-07-02','Poland'),(4,'Anonymous',NULL,NULL);
/*!40000 ALTER TABLE `author` ENABLE KEYS */;
UNLOCK TABLES;

DROP TABLE IF EXISTS `book`;
CREATE TABLE `book` (
  `book_id` int NOT NULL,
  `title` varchar(200) NOT NULL,
  `author_id` int DEFAULT NULL,
  `year` int DEFAULT NULL,
  `price` decimal(6,2) DEFAULT NULL,
  PRIMARY KEY (`book_id`),
  KEY `book_author` (`author_id`),
  CONSTRAINT `book_author` FOREIGN KEY (`author_id`) REFERENCES `author` (`author_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

LOCK TABLES `book` WRITE;
INSERT INTO `book` (`book_id`, `title`, `author_id`, `year`, `price`) VALUES
(1, 'The Dispossessed', 1, 1974, 9.99),
(2, 'The Left Hand of Darkness', 1, 1969, 8.50),
(3, 'At Swim-Two-Birds', 2, 1939, 12.00),
(4, 'The Third Policeman', 2, 1967, 11.25),
(5, 'View with a Grain of Sand', 3, 1995, 14.75),
(6, 'Beowulf', 4, NULL, NULL);
UNLOCK TABLES;

# A second database, written by hand rather than by mysqldump.
CREATE DATABASE clinic;
USE clinic;
CREATE TABLE patient (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL, visits INT DEFAULT 0, last_visit DATETIME);
INSERT INTO patient VALUES (1, 'Ada', 3, '2023-03-01 09:30:00'), (2, 'Grace', 0, NULL), (3, 'Alan', 7, '2023-04-12 16:05:00');
